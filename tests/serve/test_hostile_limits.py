"""Limits that keep the server itself standing: connections beyond the cap refused and idle ones
freed by the deadline, the cap kept below the open-file limit (a real ``gptclf serve`` under a
low ``ulimit -n``: no accept-loop errors, /healthz answering), and a shutdown that cuts a
stalled request after the grace period, on SIGTERM too."""

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gptclf.errors import GptclfError
from gptclf.serve import ServeSettings, create_app
from gptclf.serve.server import BACKLOG, OWN_FILES, connection_cap

from .conftest import RawClient, running, started

STALLED_BODY = {"Content-Type": "application/json", "Content-Length": "100"}


def _until(condition, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_connections_beyond_the_cap_are_refused_until_the_deadline_frees_them(classifier):
    settings = ServeSettings(max_connections=4, timeout_s=0.5)
    with running(create_app(classifier, settings)) as (url, server):
        idle = [RawClient(url) for _ in range(3)]
        kept = RawClient(url)
        kept.send(kept.head("GET", "/healthz"))
        assert kept.answer()[0] == 200  # served with the cap's connections all open
        _until(lambda: len(server.server_state.connections) == 4)
        status, _, body = RawClient(url).answer(timeout=2)
        assert status == 503
        assert json.loads(body) == {"error": "too many connections; try again later"}
        assert all(client.closed_within(2) for client in idle)
        assert httpx.get(f"{url}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("limit", "wanted", "cap"),
    [
        (resource.RLIM_INFINITY, 1000, 1000),
        (1024, 10_000, 1024 - OWN_FILES - 2 * BACKLOG),
        (1_000_000, 1000, 1000),
    ],
)
def test_the_connection_cap_stays_below_the_open_file_limit(limit, wanted, cap):
    assert connection_cap(wanted, limit) == cap


def test_an_open_file_limit_too_low_to_serve_is_one_error():
    with pytest.raises(GptclfError, match=r"the open-file limit \(ulimit -n\) is 300, too low"):
        connection_cap(1000, 300)


def test_shutdown_cuts_a_stalled_request_after_the_grace_period(classifier):
    app = create_app(classifier, ServeSettings(timeout_s=30, shutdown_grace_s=0.5))
    url, server, thread = started(app)
    try:
        stalled = RawClient(url)
        stalled.send(stalled.head("POST", "/v1/classify", STALLED_BODY) + b'{"text": ')
        _until(lambda: server.server_state.tasks)
        began = time.monotonic()
        server.should_exit = True  # what SIGTERM does
        thread.join(10)
        assert not thread.is_alive() and time.monotonic() - began < 2
    finally:
        server.should_exit = True
        thread.join(10)


OPEN_FILE_LIMIT = 600  # the cap: 600 - 128 - 2 * 128 = 216 connections
FLOOD = 700  # more connections than open files


def _serve_under(limit: int, run_dir, log: Path) -> tuple[subprocess.Popen, str]:
    """``gptclf serve`` with a soft open-file limit of ``limit``, output to ``log``, once it
    says where it serves."""

    def lower_limit() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    options = ["--timeout-s", "10", "--shutdown-grace-s", "1", "--max-connections", "100000"]
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gptclf", "serve", str(run_dir), "--port", "0", *options],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lower_limit,
        )
    deadline = time.monotonic() + 60
    while not (found := re.search(r"serving .* on (http://\S+)", log.read_text())):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return process, found.group(1)


def _flood(url: str, count: int) -> list[RawClient]:
    """``count`` connections that send nothing (those the server refused included)."""
    clients = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            clients.append(RawClient(url))
    return clients


def test_at_the_open_file_limit_the_server_keeps_answering_and_sigterm_is_bounded(
    trained_run, tmp_path
):
    path = tmp_path / "serve.log"
    process, url = _serve_under(OPEN_FILE_LIMIT, trained_run, path)
    try:
        flood = _flood(url, FLOOD)
        open_files = len(os.listdir(f"/proc/{process.pid}/fd"))
        statuses = set()
        for _ in range(5):  # while the flood holds the connections: an answer (503)
            try:
                statuses.add(httpx.get(f"{url}/healthz", timeout=2).status_code)
            except httpx.HTTPError:
                statuses.add(None)
        for client in flood:
            client.close()
        time.sleep(0.2)
        assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        stalled = RawClient(url)
        stalled.send(stalled.head("POST", "/v1/classify", STALLED_BODY) + b'{"text": ')
        time.sleep(0.2)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises it once stopped
        assert time.monotonic() - began < 4
    finally:
        process.kill()
        process.wait()
    output = path.read_text()
    assert "Too many open files" not in output and "out of system resource" not in output
    assert statuses == {503} and open_files < OPEN_FILE_LIMIT
    assert "Finished server process" in output
