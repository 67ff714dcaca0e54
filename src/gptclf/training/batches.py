"""The order in which training sees its examples, in batches: gptclf's batches of similar
lengths, shuffled by seed and epoch, or the book's, shuffled by torch's global random state."""

from __future__ import annotations

import math
from collections.abc import Iterator

from torch.utils.data import DataLoader

from gptclf.data.batching import (
    POOL_BATCHES,
    Batch,
    Collator,
    LengthBucketSampler,
    TokenDataset,
    text_batches,
)


class BucketBatches:
    """Training batches of similar lengths (little padding: each pool of ``pool_batches``
    batches is sorted by length; 1 makes random batches), a new order each epoch from the seed;
    evaluation batches sorted by length."""

    def __init__(
        self,
        data: TokenDataset,
        collate: Collator,
        size: int,
        seed: int,
        drop_last: bool,
        pool_batches: int = POOL_BATCHES,
    ):
        self.data, self.collate, self.size = data, collate, size
        self.seed, self.drop_last, self.pool_batches = seed, drop_last, pool_batches

    @property
    def per_epoch(self) -> int:
        n = len(self.data)
        return n // self.size if self.drop_last else math.ceil(n / self.size)

    def train(self, epoch: int) -> Iterator[Batch]:
        """The training batches of ``epoch``."""
        sampler = LengthBucketSampler(
            self.data.lengths,
            self.size,
            seed=self.seed,
            drop_last=self.drop_last,
            pool_batches=self.pool_batches,
        )
        sampler.set_epoch(epoch)
        return (self.collate([self.data[i] for i in batch]) for batch in sampler)

    def evaluation(self, data: TokenDataset) -> Iterator[Batch]:
        """Batches of ``data`` to measure it by (of whole texts, where they are chunked)."""
        if data.owners is not None:
            return text_batches(data, self.collate, self.size)
        sampler = LengthBucketSampler(data.lengths, self.size, shuffle=False)
        return (self.collate([data[i] for i in batch]) for batch in sampler)


class BookBatches(BucketBatches):
    """The book's data loaders: training batches drawn by torch's global random state (a fresh
    shuffled pass each time one is asked for), evaluation batches in file order."""

    def train(self, epoch: int) -> Iterator[Batch]:
        loader = DataLoader(
            self.data,
            batch_size=self.size,
            shuffle=True,
            drop_last=self.drop_last,
            collate_fn=self.collate,
        )
        return iter(loader)

    def evaluation(self, data: TokenDataset) -> Iterator[Batch]:
        if data.owners is not None:
            return text_batches(data, self.collate, self.size, by_length=False)
        return iter(DataLoader(data, batch_size=self.size, collate_fn=self.collate))
