"""Data parallelism under PyTorch's launcher (``torchrun``): who this process is (rank, world
size, device), which positions of any sequence are its share, and how results travel between the
processes. Without torchrun's environment there is one process and every helper is the identity."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gptclf.errors import GptclfError
from gptclf.precision import autocast

DEVICES = ("cpu", "cuda")
CPU = torch.device("cpu")
# How long a collective waits for the other processes: a rank that died or hangs ends the run
# after this at the latest (torchrun also stops the others as soon as one process fails).
TIMEOUT = timedelta(minutes=15)

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place among the processes torchrun started, and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = CPU

    @classmethod
    def from_environment(cls, device: str = "cpu") -> DistributedContext:
        """Rank and world size from torchrun's ``RANK`` and ``WORLD_SIZE`` (one process without
        them); ``cuda`` computes on the GPU numbered by ``LOCAL_RANK``."""
        return cls(_environment("RANK"), _environment("WORLD_SIZE", 1), _device(device))

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def positions(self) -> slice:
        """This rank's share of any sequence: positions rank, rank + world size, ..."""
        return slice(self.rank, None, self.world_size)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DistributedDataParallel, which averages the gradients of its trainable
        parameters over the ranks during backward; the module itself in one process."""
        if not self.is_distributed:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)

    def on_main(self, compute: Callable[[], T]) -> T:
        """Run ``compute`` on the main rank only and give its result to every rank; a
        ``GptclfError`` it raises is raised on every rank."""
        if not self.is_distributed:
            return compute()
        outcome = [_attempt(compute) if self.is_main else None]
        torch.distributed.broadcast_object_list(outcome, src=0)
        return _unpack(outcome)[0]

    def gather(self, compute: Callable[[], T]) -> list[T]:
        """Every rank's result of ``compute``, by rank, on every rank; a ``GptclfError`` raised
        on any rank is raised on all of them (the lowest rank's)."""
        if not self.is_distributed:
            return [compute()]
        outcomes: list = [None] * self.world_size
        torch.distributed.all_gather_object(outcomes, _attempt(compute))
        return _unpack(outcomes)

    def gather_shards(self, compute: Callable[[slice], T]) -> T:
        """``compute`` on this rank's positions, the ranks' results (lists or tensors with one
        entry per position) merged back into position order, on every rank."""
        parts = self.gather(lambda: compute(self.positions))
        return parts[0] if len(parts) == 1 else interleave(parts)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums of ``values`` over the ranks."""
        if not self.is_distributed:
            return values
        totals = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(totals)
        return totals.tolist()


LOCAL = DistributedContext()


def interleave(parts: Sequence[T]) -> T:
    """The inverse of sharding: ``parts[r]`` holds positions r, r + len(parts), ... of the whole;
    lists or tensors (first dimension)."""
    world, first = len(parts), parts[0]
    n = sum(len(part) for part in parts)
    if isinstance(first, torch.Tensor):
        merged = first.new_empty((n, *first.shape[1:]))
    else:
        merged = [None] * n
    for rank, part in enumerate(parts):
        merged[rank::world] = part
    return merged


def _attempt(compute: Callable[[], T]) -> tuple[T | None, str | None]:
    """(result, None), or (None, message) when ``compute`` raised a ``GptclfError``."""
    try:
        return compute(), None
    except GptclfError as exc:
        return None, str(exc)


def _unpack(outcomes: list[tuple[Any, str | None]]) -> list:
    """The results of ``_attempt`` by rank, or the first rank's error raised."""
    errors = [error for _, error in outcomes if error is not None]
    if errors:
        raise GptclfError(errors[0])
    return [value for value, _ in outcomes]


def _environment(name: str, default: int = 0) -> int:
    return int(os.environ.get(name, default))


def _device(name: str) -> torch.device:
    if name not in DEVICES:
        raise GptclfError(f"--device must be one of {', '.join(DEVICES)}")
    if name == "cpu":
        return CPU
    if not torch.cuda.is_available():
        raise GptclfError("--device cuda: PyTorch sees no CUDA GPU here")
    local_rank = _environment("LOCAL_RANK")
    if local_rank >= torch.cuda.device_count():
        raise GptclfError(
            f"--device cuda: process {local_rank} on this machine needs GPU {local_rank}, "
            f"but only {torch.cuda.device_count()} are visible"
        )
    return torch.device("cuda", local_rank)


def is_main_process() -> bool:
    """Rank 0 under torchrun, or the only process: the one that reports errors."""
    return _environment("RANK") == 0


def launched_in_parallel() -> bool:
    """Whether torchrun started several processes."""
    return _environment("WORLD_SIZE", 1) > 1


@contextmanager
def distributed_context(device: str = "cpu") -> Iterator[DistributedContext]:
    """This process's context; under torchrun with several processes the process group (gloo
    on the CPU, nccl on GPUs) lives as long as the block. On GPUs, float32 matrix products may
    use TF32."""
    context = DistributedContext.from_environment(device)
    if context.device.type == "cuda":  # float32 products on TF32 tensor cores where there are
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if not context.is_distributed:
        yield context
        return
    if context.device.type == "cuda":
        torch.cuda.set_device(context.device)
    # Building a model on the meta device imports torch._dynamo, which keeps references to any
    # process group that exists by then: the group would outlive destroy_process_group, and its
    # threads could still be freeing Python tensors while the interpreter shuts down (an abort).
    importlib.import_module("torch._dynamo")
    backend = "nccl" if context.device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield context
        torch.distributed.barrier()  # all end together: none closes links another still uses
    finally:
        torch.distributed.destroy_process_group()


@contextmanager
def device_scope(device: torch.device, precision: str) -> Iterator[None]:
    """Run code that builds its tensors with torch's factory functions (the batching helpers of
    ``gptclf.classifier``) on ``device``: new tensors are made there and bfloat16 autocast covers
    it. Nothing changes on the CPU."""
    if device.type == "cpu":
        yield
        return
    with device, autocast(precision, device.type):
        yield
