"""Model work under hostile load: a client that leaves has its queued texts dropped, a full queue
is 503 with Retry-After, a large request does not starve a small one, a model answer with
missing rows is a 500 (never a 200), and fuzzed bodies from the OpenAPI schema never make a 500
and always get a JSON error on 4xx."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from gptclf.serve import ServeSettings, create_app

from .conftest import LIMITS, RawClient, running
from conftest import HAM, SPAM


class HeldModel:
    """Stands in for ``probabilities_of_ids``: records the texts of each call; the first call
    waits for ``release``, every call takes ``seconds``."""

    def __init__(self, compute, seconds: float = 0.0, hold: bool = True):
        self.compute, self.seconds = compute, seconds
        self.calls: list[int] = []
        self.started, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, ids: list[list[int]], batch_size: int) -> np.ndarray:
        self.calls.append(len(ids))
        self.started.set()
        self.release.wait(10)
        time.sleep(self.seconds)
        return self.compute(ids, batch_size)


@pytest.fixture
def held(classifier, monkeypatch) -> HeldModel:
    model = HeldModel(classifier.probabilities_of_ids)
    monkeypatch.setattr(classifier, "probabilities_of_ids", model)
    return model


def _post(url: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/v1/classify", json=body, timeout=30)


def _until(condition, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_client_that_leaves_has_its_queued_texts_dropped(classifier, held):
    app = create_app(classifier, ServeSettings(max_wait_ms=0))
    batcher = app.state.batcher
    with running(app) as (url, _), ThreadPoolExecutor(1) as pool:
        first = pool.submit(_post, url, {"text": SPAM[0]})
        assert held.started.wait(10)
        leaving = RawClient(url)
        body = json.dumps({"texts": HAM}).encode()
        length = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        leaving.send(leaving.head("POST", "/v1/classify", length) + body)
        _until(lambda: batcher.waiting == len(HAM))
        leaving.close()
        _until(lambda: batcher.waiting == 0)  # dropped before the model is free
        held.release.set()
        assert first.result().status_code == 200
    assert held.calls == [1]  # the texts of the client that left were never computed


def test_a_full_queue_is_503_with_retry_after(classifier, held):
    app = create_app(classifier, ServeSettings(max_wait_ms=0, max_queue=2))
    with running(app) as (url, _), ThreadPoolExecutor(2) as pool:
        first = pool.submit(_post, url, {"text": SPAM[0]})
        assert held.started.wait(10)
        queued = pool.submit(_post, url, {"texts": HAM[:2]})
        _until(lambda: app.state.batcher.waiting == 2)
        refused = _post(url, {"text": SPAM[1]})
        held.release.set()
        answers = [first.result(), queued.result()]
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert refused.json() == {"error": "the service is busy (2 texts are waiting); try again later"}
    assert [a.status_code for a in answers] == [200, 200]


def test_a_large_request_does_not_starve_a_small_one(classifier, monkeypatch):
    model = HeldModel(classifier.probabilities_of_ids, seconds=0.1, hold=False)
    monkeypatch.setattr(classifier, "probabilities_of_ids", model)
    # a budget of 1 padded token: every model call holds one text (as 512 does long texts)
    app = create_app(classifier, ServeSettings(max_batch_tokens=1, max_wait_ms=0))
    finished: dict[str, float] = {}

    def timed(name: str, body: dict) -> httpx.Response:
        response = _post(url, body)
        finished[name] = time.monotonic()
        return response

    with running(app) as (url, _), ThreadPoolExecutor(2) as pool:
        large = pool.submit(timed, "large", {"texts": (SPAM + HAM + SPAM[:2])})  # 8 texts
        assert model.started.wait(10)
        small = pool.submit(timed, "small", {"text": HAM[0]})
        assert [large.result().status_code, small.result().status_code] == [200, 200]
    assert finished["small"] < finished["large"]  # in the second call of the large one's eight
    assert model.calls == [1] * 9


def test_a_model_answer_with_missing_rows_is_a_500_never_a_200(classifier, monkeypatch, caplog):
    compute = classifier.probabilities_of_ids

    def drops_a_row(ids, batch_size):
        return compute(ids, batch_size)[:-1]

    monkeypatch.setattr(classifier, "probabilities_of_ids", drops_a_row)
    with TestClient(create_app(classifier, LIMITS), raise_server_exceptions=False) as client:
        response = client.post("/v1/classify", json={"texts": [SPAM[0], HAM[0]]})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error; the server's log has the details"}
    assert "the model answered 1 rows for 2 texts" in caplog.text


def _bodies(app, path: str = "/v1/classify") -> st.SearchStrategy[dict]:
    """Bodies of ``POST path`` as the app's OpenAPI schema describes them: one of the
    properties, or any subset of them, each drawn by hypothesis-jsonschema from its own schema
    (its strategy for whole objects no longer runs on this Hypothesis)."""
    request = app.openapi()["paths"][path]["post"]["requestBody"]
    schema = request["content"]["application/json"]["schema"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    properties = {name: from_schema(sub) for name, sub in schema["properties"].items()}
    one = st.one_of([st.fixed_dictionaries({name: p}) for name, p in properties.items()])
    return one | st.fixed_dictionaries({}, optional=properties)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def test_fuzzed_bodies_never_make_a_500_and_every_4xx_is_a_json_error(classifier):
    app = create_app(classifier, LIMITS)
    bodies = st.one_of(
        _bodies(app).map(json.dumps),
        JSON_VALUES.map(json.dumps),
        st.dictionaries(st.sampled_from(["text", "texts"]), JSON_VALUES).map(json.dumps),
    ).map(str.encode) | st.binary(max_size=64)

    with TestClient(app, raise_server_exceptions=False) as client:

        @settings(
            max_examples=150,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(body=bodies)
        @example(body=b'{"text": "<|endoftext|>"}')
        @example(body=b'{"texts": ["\\u0000", " ", "\\ud83d\\ude00"]}')
        def check(body: bytes) -> None:
            response = client.post(
                "/v1/classify", content=body, headers={"Content-Type": "application/json"}
            )
            event(f"status {response.status_code}")
            assert response.status_code in (200, 413, 422), response.text
            if response.status_code == 200:
                texts = json.loads(body)
                count = 1 if texts.get("texts") is None else len(texts["texts"])
                assert len(response.json()["predictions"]) == count
            else:
                assert list(response.json()) == ["error"]

        check()


def test_fuzzed_explain_bodies_never_make_a_500_and_every_4xx_is_a_json_error(classifier):
    app = create_app(classifier, LIMITS)
    bodies = st.one_of(
        _bodies(app, "/v1/explain").map(json.dumps),
        st.dictionaries(st.sampled_from(["text", "label", "method"]), JSON_VALUES).map(json.dumps),
    ).map(str.encode) | st.binary(max_size=64)

    with TestClient(app, raise_server_exceptions=False) as client:

        @settings(max_examples=40, deadline=None, database=None)
        @given(body=bodies)
        @example(body=b'{"text": "<|endoftext|>", "label": "spam"}')
        def check(body: bytes) -> None:
            response = client.post(
                "/v1/explain", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code in (200, 413, 422), response.text
            answer = response.json()
            if response.status_code == 200 and not answer["truncated"]:
                assert "".join(t["text"] for t in answer["tokens"]) == json.loads(body)["text"]
            elif response.status_code != 200:
                assert list(answer) == ["error"]

        check()
