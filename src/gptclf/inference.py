"""The one way class logits are computed, in training, evaluation, prediction and serving: a
batch through the classifier under the run's precision, and whole lists of sequences in batches
of similar length. The frozen-prefix pass runs the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext

import numpy as np
import torch

from gptclf.classifier import SequenceClassifier
from gptclf.data.batching import Batch, Collator, LengthBucketSampler
from gptclf.models import LanguageModel
from gptclf.models.attention import stock_attention
from gptclf.precision import autocast, kept_dtype


def batch_logits(
    classifier: torch.nn.Module,
    batch: Batch,
    precision: str,
    start_block: int = 0,
    tuned_kernel: bool = True,
) -> torch.Tensor:
    """Class logits (batch, n_classes), float32, of a batch on the classifier's device (or of
    the cached hidden states entering ``start_block``). ``classifier`` may be a DDP wrapper.
    ``tuned_kernel``: the attention kernels measured fastest (else PyTorch's own choice)."""
    device = batch.inputs.device.type
    with autocast(precision, device), nullcontext() if tuned_kernel else stock_attention():
        logits = classifier(batch.inputs, batch.attention_mask, start_block)
    return logits.float()


def class_probabilities(logits: torch.Tensor, multi_label: bool) -> np.ndarray:
    """Probabilities of class logits: their softmax over the classes, or with ``multi_label``
    each label's own sigmoid (the labels of a text are decided one by one)."""
    return (logits.sigmoid() if multi_label else logits.softmax(-1)).numpy()


def text_logits(logits: torch.Tensor, owners: torch.Tensor, how: str) -> torch.Tensor:
    """Each text's class logits (n_texts, n_classes) from those of its chunks (rows of
    ``logits`` whose ``owners`` name it, texts numbered from 0): their mean or maximum."""
    n_texts = int(owners.max()) + 1 if len(owners) else 0
    index = owners.to(logits.device, torch.long).unsqueeze(1).expand_as(logits)
    out = logits.new_zeros(n_texts, logits.shape[1])
    reduce = {"mean": "mean", "max": "amax"}[how]
    return out.scatter_reduce(0, index, logits, reduce, include_self=False)


@torch.inference_mode()
def logits_of(
    classifier: SequenceClassifier,
    sequences: list[list[int]] | list[torch.Tensor],
    pad_id: int,
    precision: str = "fp32",
    *,
    batch_size: int = 32,
    pad_to: int | None = None,
    start_block: int = 0,
) -> torch.Tensor:
    """Class logits (n, n_classes) of token sequences (or of cached hidden states entering
    ``start_block``), in input order, on the CPU, by :func:`in_length_batches`."""
    was_training = classifier.training
    if was_training:  # a walk over every module: not on every call of a serving classifier
        classifier.eval()
    out = in_length_batches(
        sequences,
        lambda batch: batch_logits(classifier, batch, precision, start_block),
        classifier.head.out_features,
        pad_id,
        batch_size,
        pad_to,
    )
    if was_training:
        classifier.train()
    return out


def in_length_batches(
    sequences: list[list[int]] | list[torch.Tensor],
    logits: Callable[[Batch], torch.Tensor],
    n_classes: int,
    pad_id: int,
    batch_size: int = 32,
    pad_to: int | None = None,
) -> torch.Tensor:
    """``logits(batch)`` of every sequence (n, n_classes), in input order, on the CPU; batches
    are formed from sequences of similar length so little compute goes to padding."""
    sampler = LengthBucketSampler([len(s) for s in sequences], batch_size, shuffle=False)
    collate = Collator(pad_id, pad_to)
    out = torch.empty(len(sequences), n_classes)
    for indices in sampler:
        out[indices] = logits(collate([(sequences[i], None) for i in indices])).cpu()
    return out


@torch.inference_mode()
def states_at_depths(
    language_model: LanguageModel,
    sequences: list[list[int]],
    depths: Iterable[int],
    pad_id: int,
    precision: str = "fp32",
    batch_size: int = 32,
) -> dict[int, list[torch.Tensor]]:
    """For each depth, the hidden states (len, dim) of each sequence after the bottom ``depth``
    blocks (kept in bfloat16 when computed in it: what the frozen-prefix store holds), from one
    pass through the deepest."""
    lm, depths = language_model, sorted(set(depths))
    out = {depth: [torch.empty(0)] * len(sequences) for depth in depths}
    kept = kept_dtype(precision)
    collate = Collator(pad_id)
    sampler = LengthBucketSampler([len(s) for s in sequences], batch_size, shuffle=False)
    for indices in sampler:
        batch = collate([(sequences[i], None) for i in indices])
        mask = None if bool(batch.attention_mask.all()) else batch.attention_mask
        start = 0
        with autocast(precision):
            states = lm.embed(batch.inputs)
        for depth in depths:
            with autocast(precision):
                states = lm.run_blocks(states, mask, start=start, stop=depth)
            start, held = depth, states.to(kept)
            for row, i in enumerate(indices):
                out[depth][i] = held[row, : len(sequences[i])].clone()
    return out
