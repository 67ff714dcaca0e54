"""The model's side of training: the forward pass and loss of a batch (cross-entropy over the
classes, or for multi-label texts binary cross-entropy per label), the optimizer step, and
measuring loss, accuracy and macro-F1 over batches; with several processes each computes its
share of every batch's rows."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F

from gptclf.classifier import SequenceClassifier
from gptclf.data.batching import Batch, TokenDataset
from gptclf.distributed import LOCAL, DistributedContext, device_scope
from gptclf.inference import batch_logits, logits_of, text_logits
from gptclf.metrics import macro_f1

MEASURED_ROWS = 64  # rows per model call when measuring


class TrainingStep:
    """A classifier, what of it trains, its optimizer and schedule, and how its loss is
    weighed."""

    def __init__(
        self,
        classifier: SequenceClassifier,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        *,
        precision: str,
        start_block: int = 0,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        max_grad_norm: float | None = None,
        grad_accumulation: int = 1,
        chunks: str | None = None,
        tuned_kernel: bool = True,
        dist: DistributedContext = LOCAL,
    ):
        self.classifier = classifier
        self.network = dist.wrap(classifier)  # what the training forward runs through
        self.optimizer, self.scheduler = optimizer, scheduler
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.precision, self.start_block = precision, start_block
        self.class_weights, self.label_smoothing = class_weights, label_smoothing
        self.max_grad_norm, self.grad_accumulation = max_grad_norm, grad_accumulation
        self.chunks = chunks  # how a chunked text's logits combine: "mean" or "max"
        self.tuned_kernel, self.dist = tuned_kernel, dist

    def logits_of_batch(self, batch: Batch, network: torch.nn.Module) -> torch.Tensor:
        return batch_logits(network, batch, self.precision, self.start_block, self.tuned_kernel)

    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> torch.Tensor:
        """The (class-weighted) cross-entropy of class ids, or for multi-label 0/1 rows
        (``labels`` 2-D) the binary cross-entropy of every label (positives weighted per label);
        training asks for its label smoothing, measuring does not, so held-out losses compare
        across recipes."""
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        if labels.dim() == 2:
            targets = labels * (1 - label_smoothing) + label_smoothing / 2
            return F.binary_cross_entropy_with_logits(
                logits.float(), targets, pos_weight=weight, reduction=reduction
            )
        return F.cross_entropy(
            logits, labels, weight=weight, reduction=reduction, label_smoothing=label_smoothing
        )

    def forward_backward(self, batch: Batch, step_ends: bool) -> tuple[float, int]:
        """Forward and backward of a global batch (of this rank's share of it, with gradients
        averaged over the ranks only where the optimizer step ends); the batch's mean loss and
        how many of its examples were classified right."""
        dist = self.dist
        if not dist.is_distributed:
            batch = _to(batch, dist.device)
            logits = self.logits_of_batch(batch, self.network)
            loss = self.loss(logits, batch.labels, label_smoothing=self.label_smoothing)
            (loss / self.grad_accumulation).backward()
            return loss.item(), int(is_right(logits, batch.labels).sum())
        share, factor = share_of_batch(batch, dist.rank, dist.world_size, self.class_weights)
        share = _to(share, dist.device)
        with nullcontext() if step_ends else self.network.no_sync():
            logits = self.logits_of_batch(share, self.network)
            smoothing = self.label_smoothing
            loss = factor * self.loss(logits, share.labels, "sum", smoothing)
            (loss / self.grad_accumulation).backward()
        correct = int(is_right(logits, share.labels).sum()) if factor else 0
        mean_loss, total_correct = dist.sum([loss.item() / dist.world_size, correct])
        return mean_loss, int(total_correct)

    def optimizer_step(self) -> None:
        """Clip the gradients, step the optimizer and the schedule, and clear the gradients."""
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.inference_mode()
    def measure(self, batches: Iterable[Batch], limit: int | None) -> tuple[float, float, float]:
        """Mean batch loss, accuracy and macro-F1 over (the first ``limit``) batches, of whole
        texts where they are chunked."""
        self.classifier.eval()
        losses, right, predicted, truth = [], [], [], []
        for batch in islice(batches, limit):
            logits = self._sharded_logits(batch)
            if batch.owners is not None:
                logits = text_logits(logits, batch.owners, self.chunks)
            losses.append(self.loss(logits, batch.labels).item())
            right.append(is_right(logits, batch.labels))
            predicted.append(predicted_labels(logits, batch.labels))
            truth.append(batch.labels.long())
        self.classifier.train()
        predicted, truth = torch.cat(predicted), torch.cat(truth)
        accuracy = torch.cat(right).float().mean().item()
        return float(np.mean(losses)), accuracy, macro_f1(truth.numpy(), predicted.numpy())

    def logits(self, data: TokenDataset, pad_id: int, pad_to: int | None) -> torch.Tensor:
        """Class logits of every text, in dataset order (of its chunks combined, where texts are
        chunked), on the CPU; with several ranks each computes its share and every rank gets
        them all."""
        ids = list(data.ids)

        def compute(positions: slice) -> torch.Tensor:
            with device_scope(self.dist.device, self.precision):
                return logits_of(
                    self.classifier,
                    ids[positions],
                    pad_id,
                    self.precision,
                    pad_to=pad_to,
                    start_block=self.start_block,
                )

        logits = self.dist.gather_shards(compute)
        if data.owners is None:
            return logits
        return text_logits(logits, torch.as_tensor(data.owners), self.chunks)

    def _sharded_logits(self, batch: Batch) -> torch.Tensor:
        """Class logits of a whole batch, on the CPU, at most ``MEASURED_ROWS`` rows per model
        call (a text read in many chunks comes whole); with several ranks each computes its rows
        and every rank gets them all."""

        def compute(rows: slice) -> torch.Tensor:
            share = Batch(batch.inputs[rows], batch.attention_mask[rows], None)
            logits = [torch.empty(0, self.classifier.head.out_features)]
            for start in range(0, len(share.inputs), MEASURED_ROWS):
                piece = _to(_rows(share, slice(start, start + MEASURED_ROWS)), self.dist.device)
                logits.append(self.logits_of_batch(piece, self.classifier).cpu())
            return torch.cat(logits)

        return self.dist.gather_shards(compute)


def predicted_labels(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The class id of each row, or for multi-label rows (``labels`` 2-D) 1 for each label
    whose probability reaches 0.5."""
    return (logits >= 0).long() if labels.dim() == 2 else logits.argmax(-1)


def is_right(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Whether each row's prediction is its label: for multi-label rows, every label right."""
    if labels.dim() == 2:
        return (predicted_labels(logits, labels) == labels.long()).all(-1)
    return predicted_labels(logits, labels) == labels


def share_of_batch(
    batch: Batch, rank: int, world_size: int, class_weights: torch.Tensor | None
) -> tuple[Batch, float]:
    """Rank ``rank``'s rows of a global batch (positions rank, rank + world size, ...) and the
    factor that turns their summed loss into the rank's part of the batch's mean loss: DDP
    averages the ranks' gradients, so world size / the batch's weight (its size, or the sum of
    its class weights as ``F.cross_entropy`` divides by; for multi-label rows, their number
    times the labels', as binary cross-entropy divides by). A rank left without rows gets the first
    row with factor 0: DDP's gradient all-reduce needs every rank's backward."""
    labels = batch.labels
    weighted = class_weights is not None and labels.dim() == 1
    weight = float(class_weights[labels].sum()) if weighted else labels.numel()
    if rank >= len(labels):
        return _rows(batch, slice(0, 1)), 0.0
    return _rows(batch, slice(rank, None, world_size)), world_size / weight


def _rows(batch: Batch, rows: slice) -> Batch:
    labels = None if batch.labels is None else batch.labels[rows]
    return Batch(batch.inputs[rows], batch.attention_mask[rows], labels)


def _to(batch: Batch, device: torch.device) -> Batch:
    labels = None if batch.labels is None else batch.labels.to(device)
    return Batch(batch.inputs.to(device), batch.attention_mask.to(device), labels)
