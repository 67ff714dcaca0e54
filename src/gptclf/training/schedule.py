"""The learning rate over the optimizer steps, which parameters decay, and the loss's class
weights."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn


def lr_factor(schedule: str, warmup: float, total_steps: int) -> Callable[[int], float]:
    """The factor on the peak learning rate at each step (``LambdaLR``'s function): linear
    warm-up over the first ``warmup`` fraction of the steps, then constant, or decaying linearly
    or along a cosine to 0 at ``total_steps``."""
    warmup_steps = int(warmup * total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return factor


def balanced_class_weights(labels: list[int] | np.ndarray, n_classes: int) -> torch.Tensor:
    """Per-class loss weights inverse to the class frequencies: n / (classes * count); for
    multi-label 0/1 rows, each label's positives weigh as much as its negatives: negatives /
    positives (binary cross-entropy's ``pos_weight``)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        positives = labels.sum(axis=0)
        return torch.tensor(
            (len(labels) - positives) / np.maximum(positives, 1), dtype=torch.float32
        )
    counts = np.bincount(labels, minlength=n_classes)
    return torch.tensor(len(labels) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)


def decay_groups(trainable: dict[str, nn.Parameter], weight_decay: float, decay: str) -> list[dict]:
    """AdamW's parameter groups: with ``decay`` "matrices" only weight matrices (two or more
    dimensions) decay, while norms, biases and the head bias do not; with "all" everything
    does, in one group."""
    if decay == "all":
        return [{"params": list(trainable.values()), "weight_decay": weight_decay}]
    matrices = [p for p in trainable.values() if p.dim() >= 2]
    others = [p for p in trainable.values() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": weight_decay}]
    return [*groups, {"params": others, "weight_decay": 0.0}] if others else groups
