"""Shared by the tests of ``gptclf serve``: the classifier of the run folder trained through the
CLI (``trained_run`` in tests/conftest.py), an app on it, a uvicorn server in a thread, and the
predictions the service must answer with."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gptclf.predict import Classifier
from gptclf.serve import ServeSettings, create_app, listening_socket, training_metrics, url_of

LIMITS = ServeSettings(
    max_batch=8, max_wait_ms=50, max_texts=5, max_chars=200, max_body_bytes=200_000
)


@pytest.fixture(scope="package")
def classifier(trained_run) -> Classifier:
    """The classifier of the run folder ``trained_run`` (tests/conftest.py) that is served."""
    return Classifier.from_pretrained(trained_run)


@pytest.fixture
def client(classifier, trained_run) -> Iterator[TestClient]:
    with TestClient(create_app(classifier, LIMITS, training_metrics(trained_run))) as client:
        yield client


@contextmanager
def running(app: FastAPI) -> Iterator[tuple[str, uvicorn.Server]]:
    """``app`` served by uvicorn in a thread on a free loopback port."""
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield url_of(sock), server
    finally:
        server.should_exit = True
        thread.join(10)


def expected_predictions(classifier: Classifier, texts: list[str]) -> list[dict]:
    return [asdict(p) for p in classifier.predict(texts, batch_size=LIMITS.max_batch)]


def assert_same_predictions(got: list[dict], expected: list[dict]) -> None:
    """Same labels and probabilities up to float rounding (batches pad texts differently)."""
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    for g, e in zip(got, expected, strict=True):
        assert g["probabilities"] == pytest.approx(e["probabilities"], abs=1e-5)
        assert g["probability"] == pytest.approx(e["probability"], abs=1e-5)
