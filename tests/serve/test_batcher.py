"""Micro-batching: concurrent requests answered correctly and grouped only when batching, batches
within ``max_batch`` taken in turns (a small request is not starved), a bounded queue, cancelled
requests dropped, a failing or short model answer reaching its requests, and a graceful stop."""

import asyncio
import threading

import httpx
import numpy as np
import pytest

from gptclf.serve import MicroBatcher, ServeSettings, create_app
from gptclf.serve.batcher import QueueFull, RowCountMismatch

from .conftest import assert_same_predictions, expected_predictions, running
from conftest import HAM, SPAM


async def _post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return await asyncio.gather(*(http.post("/v1/classify", json=b) for b in bodies))


@pytest.mark.parametrize("batching", [True, False], ids=["batching", "no-batching"])
def test_concurrent_requests_are_answered_correctly_and_grouped_only_when_batching(
    classifier, batching
):
    bodies = [{"text": (SPAM + HAM)[i % 6]} for i in range(16)]
    bodies += [{"texts": [SPAM[i], HAM[i]]} for i in range(3)] + [{"texts": HAM}]
    app = create_app(classifier, ServeSettings(max_batch=16, max_wait_ms=50, batching=batching))
    with running(app) as (url, _):
        responses = asyncio.run(_post_all(url, bodies))
    texts_of = [body.get("texts") or [body["text"]] for body in bodies]
    reference = iter(expected_predictions(classifier, [t for texts in texts_of for t in texts]))
    for texts, response in zip(texts_of, responses, strict=True):
        assert response.status_code == 200
        assert_same_predictions(response.json()["predictions"], [next(reference) for _ in texts])
    calls = app.state.batcher.model_calls
    assert calls < len(bodies) if batching else calls == len(bodies)


class RecordingModel:
    """A stand-in model call: each sequence's row is its first id; records each batch's size."""

    def __init__(self, error: Exception | None = None):
        self.batches: list[list[int]] = []
        self.error = error

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]

    def __call__(self, ids: list[list[int]]) -> np.ndarray:
        self.batches.append([sequence[0] for sequence in ids])
        if self.error:
            raise self.error
        return np.array([[sequence[0]] for sequence in ids], dtype=float)


async def _gathered(batcher: MicroBatcher, requests: list[list[list[int]]]) -> list:
    """The answers of ``requests`` sent at once to a started batcher, which is then stopped."""
    batcher.start()
    try:
        return await asyncio.gather(
            *(batcher.probabilities(ids) for ids in requests), return_exceptions=True
        )
    finally:
        await batcher.stop()


def test_batches_hold_at_most_max_batch_texts_and_a_larger_request_takes_turns():
    model = RecordingModel()
    requests = [[[i]] * size for i, size in enumerate([2, 2, 5, 1, 3, 3])]
    answers = asyncio.run(_gathered(MicroBatcher(model, max_batch=4, max_wait_s=0.5), requests))
    for i, (ids, answer) in enumerate(zip(requests, answers, strict=True)):
        assert answer.tolist() == [[float(i)]] * len(ids)
    # [0 0 1 1], the first 4 of request 2, then 3 and 4 (in line before 2's rest), then 5 and 2
    assert model.batches == [[0, 0, 1, 1], [2, 2, 2, 2], [3, 4, 4, 4], [5, 5, 5, 2]]


def test_a_batch_holds_at_most_max_batch_tokens_padded_tokens_and_a_long_text_goes_alone():
    model = RecordingModel()
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.5, max_batch_tokens=10)
    requests = [[[1] * 5] * 4, [[2]], [[3] * 20], [[4]] * 3]
    answers = asyncio.run(_gathered(batcher, requests))
    assert [len(answer) for answer in answers] == [4, 1, 1, 3]
    # 2 texts of 5 tokens fill the 10; a request that does not fit is first in the next batch;
    # the 20-token text goes alone; request 1's rest comes after those in line before it
    assert model.batches == [[1, 1], [2], [3], [4, 4, 4], [1, 1]]


def test_without_batching_every_request_is_its_own_model_call():
    model = RecordingModel()
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.5, enabled=False)
    asyncio.run(_gathered(batcher, [[[1]], [[2], [3]], [[4]]]))
    assert model.sizes == [1, 2, 1] and batcher.model_calls == 3


def test_a_failing_model_call_fails_every_request_of_its_batch():
    error = RuntimeError("out of memory")
    batcher = MicroBatcher(RecordingModel(error), max_batch=8, max_wait_s=0.5)
    assert asyncio.run(_gathered(batcher, [[[1]], [[2]]])) == [error, error]
    assert batcher.model_calls == 1


def test_a_stopped_batcher_refuses_work():
    with pytest.raises(RuntimeError, match="the batcher is not running"):
        asyncio.run(MicroBatcher(RecordingModel(), 8, 0.0).probabilities([[1]]))


class HeldModel(RecordingModel):
    """A ``RecordingModel`` whose first call waits until ``release`` is set."""

    def __init__(self, error: Exception | None = None):
        super().__init__(error)
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, ids: list[list[int]]) -> np.ndarray:
        if not self.started.is_set():
            self.started.set()
            self.release.wait(10)
        return super().__call__(ids)


async def _while_the_first_call_is_held(batcher: MicroBatcher, model: HeldModel, first, then):
    """Start the batcher, send ``first``; once its model call is running, run ``then()``, then
    release the model, stop the batcher and return ``first``'s answer and what the awaitable
    that ``then()`` returned gives."""
    batcher.start()
    try:
        first_answer = asyncio.ensure_future(batcher.probabilities(first))
        assert await asyncio.to_thread(model.started.wait, 10)
        outcome = await then()
        model.release.set()
        return await first_answer, await outcome
    finally:
        model.release.set()
        await batcher.stop()


def test_a_small_request_is_not_starved_behind_a_large_one():
    model = HeldModel()
    batcher = MicroBatcher(model, max_batch=2, max_wait_s=0)
    order: list[str] = []

    async def small_while_large_computes():
        async def answer(name, ids):
            result = await batcher.probabilities(ids)
            order.append(name)
            return result

        large = asyncio.ensure_future(answer("large", [[1]] * 10))
        await asyncio.sleep(0)  # the large request is in line behind the held call
        small = asyncio.ensure_future(answer("small", [[2]]))
        await asyncio.sleep(0)
        return asyncio.gather(large, small)

    asyncio.run(
        _while_the_first_call_is_held(batcher, model, [[0]] * 2, small_while_large_computes)
    )
    assert order == ["small", "large"]
    assert model.batches[:3] == [[0, 0], [1, 1], [2, 1]]  # the small one: in the next turn
    assert all(size <= 2 for size in model.sizes)


def test_a_cancelled_request_is_dropped_before_its_texts_are_computed():
    model = HeldModel()
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0)

    async def cancel_a_queued_request():
        gone = asyncio.ensure_future(batcher.probabilities([[7], [7], [7]]))
        await asyncio.sleep(0)
        assert batcher.waiting == 3
        gone.cancel()
        await asyncio.sleep(0)
        assert batcher.waiting == 0
        return asyncio.ensure_future(batcher.probabilities([[5]]))

    first, kept = asyncio.run(
        _while_the_first_call_is_held(batcher, model, [[1]], cancel_a_queued_request)
    )
    assert first.tolist() == [[1.0]] and kept.tolist() == [[5.0]]
    assert model.batches == [[1], [5]]  # request 7 never reached the model


def test_a_full_queue_refuses_with_a_retry_after_unless_it_is_empty():
    model = HeldModel()
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0, max_queue=3)

    async def fill_the_queue():
        queued = asyncio.ensure_future(batcher.probabilities([[2], [2]]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull) as full:
            await batcher.probabilities([[3], [3]])
        fits = asyncio.ensure_future(batcher.probabilities([[4]]))
        await asyncio.sleep(0)
        refusals.append(full.value)
        return asyncio.gather(queued, fits)

    refusals: list[QueueFull] = []
    # the first request, 5 texts, is over max_queue but the queue was empty
    first, answers = asyncio.run(
        _while_the_first_call_is_held(batcher, model, [[1]] * 5, fill_the_queue)
    )
    [full] = refusals
    assert "2 texts are waiting" in str(full) and full.retry_after_s >= 1
    assert len(first) == 5 and [a.tolist() for a in answers] == [[[2.0], [2.0]], [[4.0]]]


class ShortModel(RecordingModel):
    """Answers one row fewer than asked, in its first call only."""

    def __call__(self, ids: list[list[int]]) -> np.ndarray:
        rows = super().__call__(ids)
        return rows[:-1] if len(self.batches) == 1 else rows


def test_a_model_answer_with_a_wrong_row_count_fails_the_requests_of_its_batch(caplog):
    batcher = MicroBatcher(ShortModel(), max_batch=2, max_wait_s=0.5)
    first, second, later = asyncio.run(_gathered(batcher, [[[1]], [[2]], [[3]]]))
    assert isinstance(first, RowCountMismatch) and second is first
    assert str(first) == "the model answered 1 rows for 2 texts"
    assert later.tolist() == [[3.0]]
    assert "model call for 2 texts failed: the model answered 1 rows for 2 texts" in caplog.text
