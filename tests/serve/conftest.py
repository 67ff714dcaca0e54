"""Shared by the tests of ``gptclf serve``: the classifier of the run folder trained through the
CLI (``trained_run`` in tests/conftest.py), an app on it, a uvicorn server in a thread, the
predictions the service must answer with, and a raw HTTP/1.1 client for misbehaving."""

import select
import socket
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
from gptclf.run import RunDir
from gptclf.run.record import training_record
from gptclf.serve import (
    ServeSettings,
    create_app,
    listening_socket,
    server_for,
    url_of,
)

LIMITS = ServeSettings(
    max_batch=8, max_wait_ms=50, max_texts=5, max_chars=200, max_body_bytes=200_000
)


@pytest.fixture(scope="package")
def classifier(trained_run) -> Classifier:
    """The classifier of the run folder ``trained_run`` (tests/conftest.py) that is served."""
    return Classifier.from_pretrained(trained_run)


@pytest.fixture
def client(classifier, trained_run) -> Iterator[TestClient]:
    with TestClient(
        create_app(
            classifier,
            LIMITS,
            training_record(RunDir(trained_run), classifier.labels, LIMITS.max_chars),
        )
    ) as client:
        yield client


def started(app: FastAPI) -> tuple[str, uvicorn.Server, threading.Thread]:
    """``app`` served as ``gptclf serve`` serves it (``server_for``), by uvicorn in a thread on
    a free loopback port, once it has started."""
    sock = listening_socket("127.0.0.1", 0)
    server = server_for(app, sock, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    return url_of(sock), server, thread


@contextmanager
def running(app: FastAPI) -> Iterator[tuple[str, uvicorn.Server]]:
    """``app`` served by uvicorn in a thread (``started``) while the block runs."""
    url, server, thread = started(app)
    try:
        yield url, server
    finally:
        server.should_exit = True
        thread.join(10)


def expected_predictions(classifier: Classifier, texts: list[str]) -> list[dict]:
    """The answers of ``/v1/classify``: a prediction's fields that are set (a multi-label
    model's have labels and no single label), with ``score``."""
    predictions = classifier.predict(texts, batch_size=LIMITS.max_batch)
    answers = [{**asdict(p), "score": p.probability} for p in predictions]
    return [
        {k: list(v) if isinstance(v, tuple) else v for k, v in answer.items() if v is not None}
        for answer in answers
    ]


def assert_same_predictions(got: list[dict], expected: list[dict]) -> None:
    """Same labels and probabilities up to float rounding (batches pad texts differently)."""
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    for g, e in zip(got, expected, strict=True):
        assert g["probabilities"] == pytest.approx(e["probabilities"], abs=1e-5)
        assert g["probability"] == pytest.approx(e["probability"], abs=1e-5)


class RawClient:
    """One TCP connection speaking HTTP/1.1 by hand, to misbehave as no HTTP library does:
    stall, trickle bytes, or leave before the answer."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host = f"{host}:{port}"
        self.sock = socket.create_connection((host, int(port)), timeout=10)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self, method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
        """The request line and headers (with Host) of a request, as bytes."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def trickle(self, data: bytes, every_s: float, for_s: float) -> None:
        """Send ``data`` a byte at a time until it is sent, ``for_s`` has passed, or the
        server has answered or closed."""
        deadline = time.monotonic() + for_s
        for byte in data:
            if time.monotonic() > deadline or select.select([self.sock], [], [], every_s)[0]:
                return
            try:
                self.sock.sendall(bytes([byte]))
            except OSError:
                return

    def answer(self, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """The status, headers (lower-case names) and body of the next answer."""
        self.sock.settimeout(timeout)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before an answer: {data!r}")
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.lower(): value for name, value in (line.split(": ", 1) for line in header_lines)
        }
        while len(body) < int(headers.get("content-length", 0)):
            body += self.sock.recv(65536)
        return int(status_line.split()[1]), headers, body

    def closed_within(self, seconds: float) -> bool:
        """Whether the server closes the connection within ``seconds`` (data read is dropped)."""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
                if not self.sock.recv(65536):
                    return True
        except TimeoutError:
            return False
        except OSError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()
