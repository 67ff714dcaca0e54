"""The training loop, short as the book's ``train_classifier_simple``: epochs of optimizer steps
over the batches it is given, validation after every epoch (and every ``eval_every`` steps),
early stopping, the best weights kept, and a checkpoint after every epoch."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from gptclf.data.batching import Batch, TokenDataset
from gptclf.recipe import TrainConfig
from gptclf.training import checkpoint
from gptclf.training.batches import BucketBatches
from gptclf.training.log import Logger, LoopState, Record
from gptclf.training.step import TrainingStep


class Trainer:
    """Trains ``step``'s classifier on ``batches`` as ``config`` says, validating on
    ``validation``; ``trainable`` names what trains (the checkpoint's and best weights' keys)."""

    shows_progress = True

    def __init__(
        self,
        config: TrainConfig,
        step: TrainingStep,
        batches: BucketBatches,
        validation: TokenDataset | None,
        trainable: dict[str, nn.Parameter],
        checkpoint_dir: Path | None,
        quiet: bool = False,
    ):
        self.config, self.step, self.batches = config, step, batches
        self.validation, self.trainable = validation, trainable
        self.checkpoint_dir, self.quiet = checkpoint_dir, quiet
        self.state = LoopState()
        self.best_weights: dict[str, torch.Tensor] | None = None

    def run(self, logger: Logger) -> None:
        """Train the remaining epochs, then keep the best weights if asked."""
        self.logger, state, config = logger, self.state, self.config
        self.before_training()
        start = time.perf_counter() - state.train_seconds
        for epoch in range(state.epochs_done, config.epochs):
            train_loss, train_accuracy = self.train_epoch(epoch)
            self.end_of_epoch(epoch, train_loss, train_accuracy)
            state.epochs_done = epoch + 1
            state.train_seconds = time.perf_counter() - start
            if self.should_stop():
                logger.say(
                    f"early stopping: no better validation {config.metric} for "
                    f"{config.early_stopping} epoch(s)"
                )
                break
            if state.epochs_done < config.epochs and self.checkpoint_dir is not None:
                checkpoint.save(self.checkpoint_dir, self)
        if config.keep == "best" and self.best_weights is not None:
            checkpoint.copy_into(self.trainable, self.best_weights)
        self.after_training()

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the training data; returns the mean loss and accuracy seen."""
        config, per_epoch = self.config, self.batches.per_epoch
        self.step.classifier.train()
        losses, correct, seen, since_eval = [], 0, 0, []
        bar = tqdm(
            self.batches.train(epoch),
            total=per_epoch,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=self.quiet or not self.shows_progress or not sys.stdout.isatty(),
            leave=False,
            file=sys.stdout,
        )
        for i, batch in enumerate(bar):
            step_ends = (i + 1) % config.grad_accumulation == 0 or i + 1 == per_epoch
            loss, batch_correct = self.step.forward_backward(batch, step_ends)
            losses.append(loss)
            since_eval.append(loss)
            correct += batch_correct
            seen += len(batch.labels)
            self.state.examples_seen += len(batch.labels)
            if step_ends:
                self.step.optimizer_step()
                self.state.step += 1
                if config.eval_every and (self.state.step - 1) % config.eval_every == 0:
                    self.evaluate_now(epoch + (i + 1) / per_epoch, since_eval)
                    since_eval = []
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", acc=f"{correct / seen:.1%}")
        return float(np.mean(losses)), correct / max(seen, 1)

    def measured(self, kind: str, batches: Iterator[Batch], epoch: float) -> Record:
        """A record of loss, accuracy and macro-F1 on (the first ``eval_batches`` of) batches."""
        figures = self.step.measure(batches, self.config.eval_batches)
        state = self.state
        return self.logger.record(Record(kind, epoch, state.step, state.examples_seen, *figures))

    def validate(self, epoch: float) -> Record | None:
        data = self.validation
        return (
            None
            if data is None
            else self.measured("validation", self.batches.evaluation(data), epoch)
        )

    def evaluate_now(self, position: float, recent_losses: list[float]) -> None:
        """The evaluation every ``eval_every`` steps, in the book's words."""
        train = self.train_figures_now(position, recent_losses)
        line = (
            f"Ep {int(position) + 1} (Step {self.state.step - 1:06d}): Train loss {train.loss:.3f}"
        )
        val = self.validate(position)
        if val is not None:
            line += f", Val loss {val.loss:.3f}"
        self.logger.say(line)

    def train_figures_now(self, position: float, recent_losses: list[float]) -> Record:
        """The training loss of an evaluation within the epoch: that of the steps since the
        last one."""
        state = self.state
        loss = float(np.mean(recent_losses))
        return self.logger.record(Record("train", position, state.step, state.examples_seen, loss))

    def end_of_epoch(self, epoch: int, train_loss: float, train_accuracy: float) -> None:
        state = self.state
        figures = (train_loss, train_accuracy)
        train = Record("train", epoch + 1, state.step, state.examples_seen, *figures)
        self.logger.record(train)
        val = self.validate(epoch + 1)
        improved = val is not None and self.track_best(epoch, val)
        self.logger.say(self.epoch_line(epoch, train, val, improved))

    def epoch_line(self, epoch: int, train: Record, val: Record | None, improved: bool) -> str:
        line = (
            f"epoch {epoch + 1}/{self.config.epochs}: "
            f"train loss {train.loss:.3f} acc {train.accuracy:.2%}"
        )
        if val is None:
            return line
        return line + (
            f" | val loss {val.loss:.3f} acc {val.accuracy:.2%} macro-F1 {val.macro_f1:.4f}"
            + (" (best)" if improved else "")
        )

    def track_best(self, epoch: int, val: Record) -> bool:
        """Whether ``val`` is the best validation so far (then its weights are kept)."""
        value, best, state = getattr(val, self.config.metric), self.state.best_value, self.state
        lower_is_better = self.config.metric == "loss"
        better = best is None or (value < best if lower_is_better else value > best)
        if better:
            state.best_value, state.best_epoch = value, epoch + 1
            state.epochs_without_improvement = 0
            self.best_weights = {n: p.detach().clone() for n, p in self.trainable.items()}
        else:
            state.epochs_without_improvement += 1
        return better

    def should_stop(self) -> bool:
        patience, waited = self.config.early_stopping, self.state.epochs_without_improvement
        return patience is not None and waited >= patience

    def before_training(self) -> None:
        """Nothing here; the book's loop seeds torch first."""

    def after_training(self) -> None:
        """Nothing here; the book's loop says how long it took."""
