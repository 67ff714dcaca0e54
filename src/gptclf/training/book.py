"""Chapter 6's loop exactly: torch seeded right before training, the training loss and accuracy
measured on the first batches of a fresh shuffled pass, and the book's log lines."""

from __future__ import annotations

import torch

from gptclf.training.log import Record
from gptclf.training.trainer import Trainer


class BookTrainer(Trainer):
    """The book's ``train_classifier_simple``, with the book's data loaders (``BookBatches``)."""

    shows_progress = False

    def before_training(self) -> None:
        if self.state.epochs_done == 0:
            torch.manual_seed(self.config.seed)  # as the book does right before training

    def after_training(self) -> None:
        self.logger.say(f"Training completed in {self.state.train_seconds / 60:.2f} minutes.")

    def train_figures_now(self, position: float, recent_losses: list[float]) -> Record:
        """The book measures the training loss on the first batches of a fresh pass."""
        return self.measured("train", self.batches.train(-1), position)

    def end_of_epoch(self, epoch: int, train_loss: float, train_accuracy: float) -> None:
        """The book measures the training accuracy on the first batches of a fresh pass."""
        _, accuracy, _ = self.step.measure(self.batches.train(-1), self.config.eval_batches)
        super().end_of_epoch(epoch, train_loss, accuracy)

    def epoch_line(self, epoch: int, train: Record, val: Record | None, improved: bool) -> str:
        line = f"Training accuracy: {train.accuracy * 100:.2f}% | "
        return line if val is None else line + f"Validation accuracy: {val.accuracy * 100:.2f}%"
