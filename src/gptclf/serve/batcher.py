"""Micro-batching: the token ids of concurrent requests computed together in one model thread."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass
class _Job:
    """The token ids of one request, and where its rows of probabilities go."""

    ids: list[list[int]]
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    """Gathers the token ids of concurrent requests into micro-batches of at most ``max_batch``
    texts (a larger request goes alone), waiting at most ``max_wait_s`` for a batch to fill, and
    computes each batch in one model thread; every request gets its own rows back."""

    def __init__(
        self,
        probabilities_of_ids: Callable[[list[list[int]]], np.ndarray],
        max_batch: int,
        max_wait_s: float,
        enabled: bool = True,
    ):
        self.probabilities_of_ids = probabilities_of_ids
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.enabled = enabled
        self.model_calls = 0
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gptclf-model")
        self._worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        """Compute everything already queued, then stop the worker and the model thread."""
        queue, self._queue = self._queue, None
        queue.put_nowait(None)
        await self._worker
        self._executor.shutdown()

    async def probabilities(self, ids: list[list[int]]) -> np.ndarray:
        """Class probabilities of ``ids`` (one row per sequence), computed in some batch."""
        if self._queue is None:
            raise RuntimeError("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(ids, future))
        return await future

    async def _work(self) -> None:
        """Take jobs in order, each with those that join its batch, until the stop signal."""
        queue = self._queue
        held: deque[_Job | None] = deque()
        while True:
            job = held.popleft() if held else await queue.get()
            if job is None:
                return
            batch = [job]
            if self.enabled:
                await self._fill(batch, queue, held)
            await self._compute(batch)

    async def _fill(
        self, batch: list[_Job], queue: asyncio.Queue[_Job | None], held: deque[_Job | None]
    ) -> None:
        """Add queued jobs until the batch is full or the wait is over; a job that does not fit,
        or the stop signal, is held for the next round."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        size = len(batch[0].ids)
        while size < self.max_batch:
            remaining = deadline - loop.time()
            try:
                if remaining > 0:
                    job = await asyncio.wait_for(queue.get(), remaining)
                else:
                    job = queue.get_nowait()
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                return
            if job is None or size + len(job.ids) > self.max_batch:
                held.append(job)
                return
            batch.append(job)
            size += len(job.ids)

    async def _compute(self, batch: list[_Job]) -> None:
        """One model call for the whole batch in the model thread; each job gets its rows, or
        the call's exception."""
        ids = [sequence for job in batch for sequence in job.ids]
        self.model_calls += 1
        loop = asyncio.get_running_loop()
        try:
            probabilities = await loop.run_in_executor(
                self._executor, self.probabilities_of_ids, ids
            )
        except Exception as exc:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        start = 0
        for job in batch:
            end = start + len(job.ids)
            if not job.future.done():  # done: its request was cancelled
                job.future.set_result(probabilities[start:end])
            start = end
