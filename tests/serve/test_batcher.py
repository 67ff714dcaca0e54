"""Micro-batching: concurrent requests answered correctly and grouped only when batching, batches
within ``max_batch``, a failing model call reaching its requests, and a graceful stop."""

import asyncio

import httpx
import numpy as np
import pytest

from gptclf.serve import MicroBatcher, ServeSettings, create_app

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
        self.sizes: list[int] = []
        self.error = error

    def __call__(self, ids: list[list[int]]) -> np.ndarray:
        self.sizes.append(len(ids))
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


def test_batches_hold_at_most_max_batch_texts_and_a_larger_request_goes_alone():
    model = RecordingModel()
    requests = [[[i]] * size for i, size in enumerate([2, 2, 5, 1, 3, 3])]
    answers = asyncio.run(_gathered(MicroBatcher(model, max_batch=4, max_wait_s=0.5), requests))
    for i, (ids, answer) in enumerate(zip(requests, answers, strict=True)):
        assert answer.tolist() == [[float(i)]] * len(ids)
    assert model.sizes == [4, 5, 4, 3]


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
