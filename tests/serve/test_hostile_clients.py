"""Hostile clients against a real server (uvicorn in a thread, configured as ``gptclf serve``
configures it): slow headers and bodies cut with 408, idle connections closed, unauthenticated
clients refused from their headers alone and holding no body memory, refusals of large bodies
that urllib, requests and curl all receive, HEAD /healthz, no redirects, the Host check."""

import json
import shutil
import subprocess
import time
import tracemalloc
import urllib.error
import urllib.request

import httpx
import pytest

from gptclf.serve import ServeSettings, create_app

from .conftest import RawClient, running
from conftest import SPAM

KEY = "s3cret"
JSON_TYPE = {"Content-Type": "application/json"}


def test_headers_sent_a_byte_at_a_time_are_cut_with_408(classifier):
    with running(create_app(classifier, ServeSettings(timeout_s=0.5))) as (url, _):
        client = RawClient(url)
        began = time.monotonic()
        client.trickle(client.head("GET", "/healthz"), every_s=0.1, for_s=5)
        status, headers, body = client.answer()
        assert time.monotonic() - began < 2
        assert client.closed_within(1)
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body) == {"error": "the request headers did not arrive within 0.5 s"}


def test_a_silent_connection_and_an_idle_kept_alive_one_are_closed(classifier):
    settings = ServeSettings(timeout_s=0.5, keep_alive_s=0.3)
    with running(create_app(classifier, settings)) as (url, _):
        silent, kept = RawClient(url), RawClient(url)
        kept.send(kept.head("GET", "/healthz"))
        assert kept.answer()[0] == 200
        began = time.monotonic()
        assert kept.closed_within(2) and time.monotonic() - began < 1.5
        assert silent.closed_within(2)


def test_a_body_sent_a_byte_at_a_time_is_cut_with_408(classifier):
    with running(create_app(classifier, ServeSettings(timeout_s=0.5))) as (url, _):
        client = RawClient(url)
        body = json.dumps({"text": SPAM[0]}).encode()
        length = {**JSON_TYPE, "Content-Length": str(len(body))}
        client.send(client.head("POST", "/v1/classify", length))
        began = time.monotonic()
        client.trickle(body, every_s=0.1, for_s=5)
        status, headers, answer = client.answer()
        assert time.monotonic() - began < 2
        assert client.closed_within(1)
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(answer) == {"error": "the request body did not arrive within 0.5 s"}


def test_unauthenticated_clients_are_refused_from_their_headers_and_hold_no_body_memory(
    classifier,
):
    sent, clients = 999_000, 20
    announced = {**JSON_TYPE, "Content-Length": "1000000"}
    with running(create_app(classifier, ServeSettings(api_key=KEY, timeout_s=1))) as (url, _):
        no_body_yet = RawClient(url)
        no_body_yet.send(no_body_yet.head("POST", "/v1/classify", announced))
        status, headers, _ = no_body_yet.answer(timeout=1)  # at once: from the headers alone
        assert status == 401 and headers["connection"] == "close"
        tracemalloc.start()
        try:
            stalled = [RawClient(url) for _ in range(clients)]
            for client in stalled:  # 999 kB of the 1 MB announced, then nothing
                client.send(client.head("POST", "/v1/classify", announced) + b"x" * sent)
            statuses = [client.answer()[0] for client in stalled]
            time.sleep(0.3)  # what was sent has been read; the clients are stalled
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert statuses == [401] * clients
        assert held < 2_000_000, f"{held:,} bytes held for {clients * sent:,} sent"
        assert all(client.closed_within(3) for client in stalled)  # the drain's time limit


BODY_3MB = b'{"text": "' + b"x" * 3_000_000 + b'"}'


def _urllib_status(url: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=BODY_3MB, headers=JSON_TYPE, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def _requests_status(url: str) -> tuple[int, dict]:
    requests = pytest.importorskip("requests")
    response = requests.post(url, data=BODY_3MB, headers=JSON_TYPE, timeout=10)
    return response.status_code, response.json()


def _curl_status(url: str) -> tuple[int, dict]:
    if shutil.which("curl") is None:
        pytest.skip("no curl")
    command = ["curl", "-s", "-w", "\n%{http_code}", "-H", "Content-Type: application/json"]
    done = subprocess.run(
        [*command, "--data-binary", "@-", url], input=BODY_3MB, capture_output=True, timeout=20
    )
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), json.loads(body)


def _httpx_chunked_status(url: str) -> tuple[int, dict]:
    chunks = (BODY_3MB[i : i + 65536] for i in range(0, len(BODY_3MB), 65536))
    response = httpx.post(url, content=chunks, headers=JSON_TYPE, timeout=10)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "send", [_urllib_status, _requests_status, _curl_status, _httpx_chunked_status]
)
@pytest.mark.parametrize(("api_key", "status"), [(None, 413), (KEY, 401)])
def test_every_client_receives_the_refusal_of_a_3_mb_body(classifier, send, api_key, status):
    settings = ServeSettings(max_body_bytes=200_000, api_key=api_key)
    with running(create_app(classifier, settings)) as (url, _):
        answered, body = send(f"{url}/v1/classify")
        assert httpx.get(f"{url}/healthz").status_code == 200
    assert answered == status and list(body) == ["error"]


def test_head_healthz_is_200_without_a_body(classifier):
    with running(create_app(classifier, ServeSettings())) as (url, _):
        response = httpx.head(f"{url}/healthz")
    assert response.status_code == 200 and response.content == b""


def test_no_path_redirects_and_no_answer_echoes_the_host(classifier):
    with running(create_app(classifier, ServeSettings(allowed_hosts=("*",)))) as (url, _):
        evil = {"Host": "evil.example"}
        answers = [
            httpx.post(f"{url}/v1/classify/", json={"text": "hi"}, headers=evil),
            httpx.get(f"{url}/healthz/", headers=evil),
            httpx.get(f"{url}/docs/", headers=evil),
        ]
    for answer in answers:
        assert answer.status_code == 404 and answer.json() == {"error": "Not Found"}
        assert "location" not in answer.headers and b"evil" not in answer.content


@pytest.mark.parametrize(
    ("allowed", "accepted", "refused"),
    [
        (None, ["localhost", "127.0.0.1", "[::1]", "LOCALHOST"], ["evil.example", "127.0.0.2"]),
        (("api.example", "*.corp.example"), ["api.example", "x.corp.example"], ["localhost"]),
    ],
    ids=["default", "given"],
)
def test_only_allowed_host_names_are_served(classifier, allowed, accepted, refused):
    with running(create_app(classifier, ServeSettings(allowed_hosts=allowed))) as (url, _):
        port = url.rsplit(":", 1)[1]

        def status(host: str) -> int:
            return httpx.get(f"{url}/healthz", headers={"Host": f"{host}:{port}"}).status_code

        assert [status(host) for host in accepted] == [200] * len(accepted)
        assert [status(host) for host in refused] == [400] * len(refused)


def test_answers_go_out_at_once_without_waiting_for_the_clients_acknowledgement(classifier):
    """Every served connection has TCP_NODELAY (which asyncio leaves unset on the listening
    socket's connections), so an answer's body never waits ~40 ms behind its headers."""
    import http.client
    import socket

    with running(create_app(classifier, ServeSettings())) as (url, server):
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() == b'{"status":"ok"}'
        (served,) = server.server_state.connections
        sock = served.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        connection.close()
