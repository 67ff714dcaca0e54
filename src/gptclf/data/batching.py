"""Feeding the model: a dataset of token ids and label ids, right-padding collation with an
attention mask, and a length-bucketing batch sampler so short texts travel with short texts."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


@dataclass
class Batch:
    inputs: torch.Tensor  # (batch, seq) token ids or (batch, seq, dim) hidden states, right-padded
    attention_mask: torch.Tensor  # (batch, seq) long: 1 for tokens, 0 for padding
    labels: torch.Tensor | None  # (batch,) long class ids, or (batch, labels) 0/1 floats for
    # multi-label texts; of each text where rows are its chunks
    owners: torch.Tensor | None = None  # (batch,) the text of each row, where texts are chunked


class TokenDataset(Dataset):
    """Examples as (token ids, label id, multi-label 0/1 row, or None); ids may also be (seq,
    dim) tensors of hidden states cached for each token. Where texts are read in chunks, each
    chunk is an example with its text's label: ``owners`` names the text of each (in order),
    ``labels`` are the texts'."""

    def __init__(
        self,
        ids: Sequence[Sequence[int]] | Sequence[torch.Tensor],
        labels: Sequence[int] | np.ndarray | None = None,
        owners: np.ndarray | None = None,
    ):
        n_texts = len(ids) if owners is None else (int(owners[-1]) + 1 if len(owners) else 0)
        if labels is not None and len(labels) != n_texts:
            raise ValueError("ids and labels differ in length")
        self.ids = ids
        self.labels = labels
        self.owners = owners

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Sequence[int], int | None]:
        if self.labels is None:
            return self.ids[index], None
        text = index if self.owners is None else int(self.owners[index])
        return self.ids[index], self.labels[text]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.ids], dtype=np.int64)

    @property
    def example_labels(self) -> list[int]:
        """The label of each example: its text's."""
        if self.owners is None:
            return list(self.labels)
        return [self.labels[text] for text in self.owners.tolist()]

    def text_rows(self) -> list[np.ndarray]:
        """The examples (chunks) of each text, in text order."""
        if not len(self.owners):
            return []
        bounds = np.searchsorted(self.owners, np.arange(int(self.owners[-1]) + 2))
        return [np.arange(a, b) for a, b in itertools.pairwise(bounds)]


def text_batches(
    data: TokenDataset, collate: Collator, size: int, by_length: bool = True
) -> Iterator[Batch]:
    """Batches of whole texts of chunked ``data`` (similar in length, or in order), at most
    ``size`` chunks each unless one text has more: a row per chunk, a label per text, and
    ``owners`` naming each row's text within the batch."""
    rows = data.text_rows()
    order = np.arange(len(rows))
    if by_length:
        lengths = data.lengths
        order = order[np.argsort([int(lengths[r].sum()) for r in rows], kind="stable")]
    texts: list[int] = []
    for text in order.tolist():
        if texts and sum(len(rows[t]) for t in texts) + len(rows[text]) > size:
            yield _text_batch(data, collate, texts, rows)
            texts = []
        texts.append(text)
    if texts:
        yield _text_batch(data, collate, texts, rows)


def _text_batch(
    data: TokenDataset, collate: Collator, texts: list[int], rows: list[np.ndarray]
) -> Batch:
    batch = collate([(data.ids[i], None) for t in texts for i in rows[t]])
    labels = None if data.labels is None else label_tensor([data.labels[t] for t in texts])
    owners = torch.repeat_interleave(torch.tensor([len(rows[t]) for t in texts]))
    return Batch(batch.inputs, batch.attention_mask, labels, owners)


class Collator:
    """Right-pad a list of examples to the longest in the batch, or to a fixed ``pad_to`` length
    as the book does (longer sequences are then cut to ``pad_to``). Token ids are padded with
    ``pad_id``; cached hidden states (seq, dim) with zeros."""

    def __init__(self, pad_id: int, pad_to: int | None = None):
        self.pad_id = pad_id
        self.pad_to = pad_to

    def __call__(
        self, examples: Sequence[tuple[Sequence[int] | torch.Tensor, int | None]]
    ) -> Batch:
        sequences = [x[: self.pad_to] if self.pad_to else x for x, _ in examples]
        width = self.pad_to or max(len(s) for s in sequences)
        if isinstance(sequences[0], torch.Tensor):
            first = sequences[0]
            inputs = first.new_zeros((len(sequences), width, *first.shape[1:]))
        else:
            inputs = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            inputs[row, : len(seq)] = torch.as_tensor(seq)
            attention_mask[row, : len(seq)] = 1
        labels = [label for _, label in examples]
        has_labels = all(label is not None for label in labels)
        return Batch(inputs, attention_mask, label_tensor(labels) if has_labels else None)


def label_tensor(labels: Sequence[int] | Sequence[np.ndarray]) -> torch.Tensor:
    """Class ids as a long tensor, or multi-label 0/1 rows as a float one."""
    return torch.as_tensor(np.asarray(labels))


POOL_BATCHES = 50  # batches per pool sorted by length: random enough, little padding


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of indices with similar lengths, in a shuffled order that the seed and epoch fix.

    Each epoch: shuffle all indices, cut them into pools of ``pool_batches`` batches, sort each
    pool by length, cut the pools into batches, shuffle the batch order. Every index appears
    exactly once per epoch (``drop_last`` drops only the final incomplete batch).
    Without ``shuffle``, batches follow the sorted lengths (for evaluation and prediction).
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        pool_batches: int = POOL_BATCHES,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.pool_size = batch_size * pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.permutation(len(self.lengths))
            pools = [order[i : i + self.pool_size] for i in range(0, len(order), self.pool_size)]
            batches = [b for pool in pools for b in self._cut(self._by_length(pool))]
        else:
            batches = self._cut(self._by_length(np.arange(len(self.lengths))))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches = batches[:-1]  # only the last cut can be short: pools hold whole batches
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _by_length(self, indices: np.ndarray) -> np.ndarray:
        return indices[np.argsort(self.lengths[indices], kind="stable")]

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        return [
            order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)
        ]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)
