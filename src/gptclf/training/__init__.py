"""Finetuning: preparing data and model, the loop (gptclf's and the book's), its steps,
schedule and checkpoints, and ``train``, which writes the run folder."""

from gptclf.training.train import train

__all__ = ["train"]
