"""Micro-batching: the token ids of concurrent requests computed together in one model thread,
in turns so that a large request cannot starve a small one, with a bounded queue."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

log = logging.getLogger("gptclf.serve")

T = TypeVar("T")


def model_thread() -> ThreadPoolExecutor:
    """A thread for one model to be loaded in and to compute every batch in. PyTorch keeps a
    set of CPU worker threads per calling thread; a second set on the same cores slows every call
    (one message on 2 cores: 31 ms when one thread loads and computes, 41 ms when another
    loaded the model)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="gptclf-model")


class QueueFull(Exception):
    """The queue holds as many texts as it may; the request can be tried again later."""

    def __init__(self, waiting: int, retry_after_s: int):
        super().__init__(f"the service is busy ({waiting:,} texts are waiting); try again later")
        self.retry_after_s = retry_after_s


class RowCountMismatch(RuntimeError):
    """A model call answered a number of rows other than the number of texts it was given."""


@dataclass
class _Job:
    """The token ids of one request, how many of them have gone to the model, the rows computed
    so far, and where all its rows go."""

    ids: list[list[int]]
    future: asyncio.Future[np.ndarray]
    sent: int = 0
    rows: list[np.ndarray] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        """Texts of the job not yet given to the model."""
        return len(self.ids) - self.sent


@dataclass
class _Piece:
    """Texts ``start:end`` of a job, computed in one batch."""

    job: _Job
    start: int
    end: int


@dataclass
class _Batch:
    """The pieces of one model call: at most ``max_texts`` texts and ``max_tokens`` padded
    tokens (texts times the longest), though a first text always fits."""

    max_texts: int
    max_tokens: int
    pieces: list[_Piece] = field(default_factory=list)
    texts: int = 0
    longest: int = 0

    @property
    def full(self) -> bool:
        """Whether the batch has its most texts."""
        return self.texts >= self.max_texts

    def take(self, job: _Job) -> bool:
        """Add the next texts of ``job`` that fit, if any; whether some did."""
        end, longest = job.sent, self.longest
        while end < len(job.ids) and not self.full:
            longer = max(longest, len(job.ids[end]))
            if self.texts and (self.texts + 1) * longer > self.max_tokens:
                break
            end, longest, self.texts = end + 1, longer, self.texts + 1
        if end == job.sent:
            return False
        self.pieces.append(_Piece(job, job.sent, end))
        self.longest, job.sent = longest, end
        return True


class MicroBatcher:
    """Gathers the token ids of concurrent requests into micro-batches of at most ``max_batch``
    texts and ``max_batch_tokens`` padded tokens, waiting at most ``max_wait_s`` for a batch to
    fill, and computes each batch in one model thread. Requests take turns: each batch takes the
    next pieces of the requests in line, and a request with texts left goes back to the end of
    the line, behind those that arrived meanwhile. Batches are computed in ``thread`` (give
    the one the model was loaded in: :func:`model_thread`; by default one of its own, made at
    start and ended at stop). At most ``max_queue`` texts wait (above it
    :class:`QueueFull`, unless the queue is empty); a request cancelled before its texts are
    computed is dropped; a model call that answers the wrong number of rows fails the requests
    of its batch."""

    def __init__(
        self,
        probabilities_of_ids: Callable[[list[list[int]]], np.ndarray],
        max_batch: int,
        max_wait_s: float,
        enabled: bool = True,
        max_queue: int = 512,
        max_batch_tokens: int = 512,
        thread: ThreadPoolExecutor | None = None,
    ):
        self.probabilities_of_ids = probabilities_of_ids
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.enabled = enabled
        self.max_queue = max_queue
        self.model_calls = 0
        self._line: deque[_Job] = deque()
        self._arrived: asyncio.Event | None = None
        self._running = False
        self._batch_seconds = 0.0
        self._worker: asyncio.Task | None = None
        self._given_thread = thread
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._arrived = asyncio.Event()
        self._running = True
        self._executor = self._given_thread or model_thread()
        self._worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        """Compute everything already queued, then stop the worker and the model thread."""
        self._running = False
        self._arrived.set()
        await self._worker
        if self._given_thread is None:
            self._executor.shutdown()

    @property
    def waiting(self) -> int:
        """Texts queued and not yet given to the model, of requests still waiting for them."""
        return sum(job.waiting for job in self._line if not job.future.done())

    async def probabilities(self, ids: list[list[int]]) -> np.ndarray:
        """Class probabilities of ``ids`` (one row per sequence), computed in some batches."""
        if not self._running:
            raise RuntimeError("the batcher is not running")
        waiting = self.waiting
        if waiting and waiting + len(ids) > self.max_queue:
            raise QueueFull(waiting, self._retry_after_s(waiting))
        job = _Job(ids, asyncio.get_running_loop().create_future())
        self._line.append(job)
        self._arrived.set()
        return await job.future

    async def in_model_thread(self, work: Callable[..., T], *args: object) -> T:
        """``work(*args)`` computed in the model thread, between batches."""
        if not self._running:
            raise RuntimeError("the batcher is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def _retry_after_s(self, waiting: int) -> int:
        """Whole seconds until the texts waiting now are likely computed (at least 1)."""
        return max(1, math.ceil(waiting / self.max_batch * self._batch_seconds))

    async def _work(self) -> None:
        """Compute batches while there are jobs; once stopped, finish the line and return."""
        while True:
            if not self._line:
                if not self._running:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if self.enabled:
                await self._fill()
            pieces = self._next_pieces()
            if pieces:
                await self._compute(pieces)

    async def _fill(self) -> None:
        """Wait until a batch's worth of texts is queued, the wait is over, or the stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while self._running and self.waiting < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _next_pieces(self) -> list[_Piece]:
        """The next batch: pieces of the jobs in line, first come first, within the batch's
        limits (without batching, of the first job only); a job none of whose texts fits is
        first in line for the next. Jobs whose requests were cancelled leave the line."""
        batch = _Batch(self.max_batch, self.max_batch_tokens)
        while self._line and not batch.full and (self.enabled or not batch.pieces):
            job = self._line.popleft()
            if job.future.done():
                continue
            if not batch.take(job):
                self._line.appendleft(job)
                break
        return batch.pieces

    async def _compute(self, pieces: list[_Piece]) -> None:
        """One model call for the pieces in the model thread; each job gets its rows, or the
        call's error. A job with texts left goes back to the end of the line."""
        ids = [sequence for piece in pieces for sequence in piece.job.ids[piece.start : piece.end]]
        self.model_calls += 1
        began = time.perf_counter()
        try:
            probabilities = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.probabilities_of_ids, ids
            )
            _check_rows(probabilities, len(ids))
        except Exception as exc:
            log.error("model call for %d texts failed: %s", len(ids), exc)
            _fail([piece.job for piece in pieces], exc)
            return
        finally:
            self._batch_seconds = time.perf_counter() - began
        offset = 0
        for piece in pieces:
            size = piece.end - piece.start
            self._deliver(piece.job, probabilities[offset : offset + size])
            offset += size

    def _deliver(self, job: _Job, rows: np.ndarray) -> None:
        """Give ``job`` its computed ``rows``; all of them once it has no texts left."""
        if job.future.done():  # cancelled while computing: its client has gone
            return
        job.rows.append(rows)
        if job.waiting:
            self._line.append(job)
        else:
            job.future.set_result(np.concatenate(job.rows))


def _check_rows(probabilities: np.ndarray, texts: int) -> None:
    """Refuse a model answer without exactly one row per text."""
    rows = len(probabilities) if np.ndim(probabilities) else 0
    if np.ndim(probabilities) != 2 or rows != texts:
        raise RowCountMismatch(f"the model answered {rows} rows for {texts} texts")


def _fail(jobs: list[_Job], error: Exception) -> None:
    """Set ``error`` on every job still waiting for its rows."""
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)
