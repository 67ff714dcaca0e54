"""Load on ``gptclf serve``: throughput and latency with concurrent clients, with micro-batching
on and off, then hostile requests, then clients that try to hold the server (slow headers, slow
bodies, stalled unauthenticated uploads, idle connections), while normal clients keep sending.

    .venv/bin/python benchmarks/serve_load.py [RUN_DIR] [--clients 1 8 32] [--requests 20]
        [--hold-clients 10] [--out benchmarks/results]

RUN_DIR defaults to ``runs/demo`` (made by ``make demo``). Each server is its own ``gptclf serve``
process (with an API key, which normal clients send) on a free loopback port, so the RSS read
from ``/proc/<pid>/status`` is the server's alone. Every client sends ``--requests``
single-message requests one after another. Hostile requests (a body over the size limit with and
without Content-Length, invalid UTF-8, deeply nested JSON, 10,000 texts in one request) must each
get a 4xx answer, and each kind of holding client (``--hold-clients`` scales their numbers) must
be cut, while eight normal clients go on without an error and the server's memory stays flat.
Writes ``serve_load.md`` (the tables) and ``serve_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np

MESSAGES = [
    "WINNER!! As a valued network customer you have been selected to receive a £900 prize reward!",
    "Hey, just wanted to check if we're still on for dinner tonight? Let me know!",
    "URGENT! Your mobile number has won a 2000 bonus caller prize. Call 09058094455 now",
    "I'll be home late, can you pick up some milk on the way back?",
    "Free entry in 2 a weekly comp to win FA Cup final tickets. Text FA to 87121 to receive entry",
    "Ok lar... Joking wif u oni...",
    "Had your mobile 11 months or more? You are entitled to update to the latest colour mobile",
    "Sorry, I'll call later in the meeting.",
]
BODY_LIMIT = 1_000_000  # gptclf serve's default --max-body-bytes
REQUEST_TIMEOUT_S = 120.0
HOSTILE_TRAFFIC_CLIENTS = 8
HOSTILE_TRAFFIC_MAX_REQUESTS = 200  # per normal client, a bound in case the hostile part hangs
API_KEY = "serve-load-key"
TRICKLE_EVERY_S = 0.5  # a slow client's pace: one byte every half second
HOLD_LIMIT_S = 30.0  # how long a holding client tries at most (the server's --timeout-s is 10)
T = TypeVar("T")


@dataclass
class Server:
    process: subprocess.Popen
    url: str


def start_server(run_dir: Path, options: list[str], log: Path) -> Server:
    """``gptclf serve RUN_DIR --port 0`` in its own process, once it answers /healthz."""
    command = [sys.executable, "-m", "gptclf", "serve", str(run_dir), "--port", "0", *options]
    environment = {**os.environ, "GPTCLF_API_KEY": API_KEY}
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        found = re.search(r"serving .* on (http://\S+)", log.read_text())
        if found and is_healthy(found.group(1)):
            return Server(process, found.group(1))
        if process.poll() is not None:
            raise SystemExit(
                f"gptclf serve ended with code {process.returncode}:\n{log.read_text()}"
            )
        time.sleep(0.2)
    process.kill()
    raise SystemExit("gptclf serve did not start within 10 minutes")


def is_healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def stop_server(server: Server) -> None:
    """SIGTERM (graceful shutdown), then SIGKILL if it is still running after 30 s."""
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    """The process's peak resident memory so far (VmRSS: the current one), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    kib = int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1))
    return round(kib / 1024, 1)


def latency_summary(latencies: list[float], errors: int, seconds: float) -> dict:
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
    }


async def client_requests(
    http: httpx.AsyncClient,
    first: int,
    count: int,
    latencies: list[float],
    stop: asyncio.Event | None = None,
) -> int:
    """Send ``count`` single-message requests one after another (fewer if ``stop`` is set);
    records each answered request's latency and returns the number of errors."""
    errors = 0
    for i in range(first, first + count):
        if stop is not None and stop.is_set():
            break
        began = time.perf_counter()
        try:
            response = await http.post("/v1/classify", json={"text": MESSAGES[i % len(MESSAGES)]})
            if response.status_code == 200:
                latencies.append(time.perf_counter() - began)
                continue
        except httpx.HTTPError:
            pass
        errors += 1
    return errors


def new_client(url: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    key = {"Authorization": f"Bearer {API_KEY}"}
    return httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits, headers=key)


async def load(url: str, clients: int, per_client: int) -> dict:
    """``clients`` concurrent clients, each sending ``per_client`` requests."""
    latencies: list[float] = []
    async with new_client(url, clients) as http:
        await client_requests(http, 0, clients, latencies)  # warm-up: connections, first batch
        latencies.clear()
        began = time.perf_counter()
        errors = await asyncio.gather(
            *(client_requests(http, c, per_client, latencies) for c in range(clients))
        )
        seconds = time.perf_counter() - began
    return {"clients": clients, **latency_summary(latencies, sum(errors), seconds)}


async def oversized_stream(size: int) -> AsyncIterator[bytes]:
    chunk = b"x" * 65_536
    for _ in range(size // len(chunk) + 1):
        yield chunk


def hostile_requests() -> dict[str, dict]:
    """Name -> keyword arguments of ``httpx.AsyncClient.post`` for each hostile request."""
    json_type = {"content-type": "application/json"}
    return {
        "body of 8 MB with Content-Length": {
            "content": b"x" * 8 * BODY_LIMIT,
            "headers": json_type,
        },
        "body of 8 MB streamed (chunked)": {
            "content": oversized_stream(8 * BODY_LIMIT),
            "headers": json_type,
        },
        "invalid UTF-8 bytes": {"content": b'{"text": "\xff\xfe\xfd"}', "headers": json_type},
        "JSON nested 500,000 deep": {"content": b"[" * 500_000, "headers": json_type},
        "10,000 texts in one request": {"json": {"texts": ["free prize, call now"] * 10_000}},
    }


def error_message(response: httpx.Response) -> str:
    """The ``error`` of a JSON error body, else the body itself."""
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


async def send_hostile(url: str, name: str, options: dict) -> dict:
    began = time.perf_counter()
    async with new_client(url, 1) as http:
        try:
            response = await http.post("/v1/classify", **options)
            status, answer = response.status_code, error_message(response)
        except httpx.HTTPError as exc:
            status, answer = None, f"{type(exc).__name__}: {exc}"
    return {
        "request": name,
        "status": status,
        "answer": answer,
        "seconds": round(time.perf_counter() - began, 3),
        "ok": status is not None and 400 <= status < 500,
    }


async def during_normal_traffic(url: str, work: Callable[[], Awaitable[T]]) -> tuple[T, dict]:
    """``work()`` while normal clients keep sending; its result, and the normal traffic."""
    stop = asyncio.Event()
    latencies: list[float] = []
    async with new_client(url, HOSTILE_TRAFFIC_CLIENTS) as http:
        began = time.perf_counter()
        clients = range(HOSTILE_TRAFFIC_CLIENTS)
        limit = HOSTILE_TRAFFIC_MAX_REQUESTS
        traffic = asyncio.gather(
            *(client_requests(http, c, limit, latencies, stop) for c in clients)
        )
        await asyncio.sleep(0.5)  # the normal clients are going
        try:
            result = await work()
        finally:
            stop.set()
        errors = await traffic
        seconds = time.perf_counter() - began
    summary = latency_summary(latencies, sum(errors), seconds)
    return result, {"clients": HOSTILE_TRAFFIC_CLIENTS, **summary}


async def hostile_under_load(url: str) -> dict:
    """The hostile requests one after another while normal clients keep sending."""

    async def send_all() -> list[dict]:
        return [await send_hostile(url, n, o) for n, o in hostile_requests().items()]

    hostile, normal = await during_normal_traffic(url, send_all)
    return {"hostile": hostile, "normal_traffic": normal}


@dataclass
class Holder:
    """A kind of client that tries to hold the server: ``count`` of them each send ``first`` at
    once, then ``trickle`` a byte every ``TRICKLE_EVERY_S``, then wait."""

    count: int
    first: bytes
    trickle: bytes = b""


def holders(url: str, scale: int) -> dict[str, Holder]:
    """Name -> the holding clients of each phase, ``scale`` setting their numbers."""
    host = url.removeprefix("http://")

    def head(headers: dict[str, str]) -> bytes:
        lines = ["POST /v1/classify HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    body = json.dumps({"text": MESSAGES[0]}).encode()
    authorized = {"Authorization": f"Bearer {API_KEY}", "Content-Length": str(len(body))}
    slow, many, pace = 5 * scale, 20 * scale, f"a byte every {TRICKLE_EVERY_S} s"
    stalled = head({"Content-Length": "1000000"}) + b"x" * 999_000
    return {
        f"{slow} clients sending their headers {pace}": Holder(slow, b"", head(authorized)),
        f"{slow} clients sending their body {pace}": Holder(slow, head(authorized), body),
        f"{many} unauthenticated clients stalling after 999 kB of 1 MB": Holder(many, stalled),
        f"{many} connections that send nothing": Holder(many, b""),
    }


async def hold(url: str, holder: Holder) -> tuple[str, float]:
    """One holding client: what came of it (the status answered, "closed" without an answer,
    "held" after ``HOLD_LIMIT_S``, or the error) and how long the server kept it."""
    began = time.perf_counter()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
    except OSError as exc:
        return type(exc).__name__, 0.0
    try:
        writer.write(holder.first)
        await writer.drain()
        answer = asyncio.ensure_future(reader.read())  # all until the server closes
        for byte in holder.trickle:
            late = time.perf_counter() - began > HOLD_LIMIT_S
            if late or (await asyncio.wait({answer}, timeout=TRICKLE_EVERY_S))[0]:
                break
            writer.write(bytes([byte]))
            await writer.drain()
        data = await asyncio.wait_for(answer, HOLD_LIMIT_S - (time.perf_counter() - began))
        outcome = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
    except TimeoutError:
        outcome = "held"
    except OSError as exc:
        outcome = type(exc).__name__
    finally:
        writer.close()
    return outcome, time.perf_counter() - began


async def holding_under_load(server: Server, name: str, holder: Holder) -> dict:
    """``holder.count`` holding clients at once while normal clients keep sending; the server's
    resident memory is sampled every quarter second meanwhile."""

    async def hold_all() -> tuple[list[tuple[str, float]], list[float]]:
        holding = asyncio.gather(*(hold(server.url, holder) for _ in range(holder.count)))
        rss = [peak_rss_mib(server.process.pid, "VmRSS")]
        while not holding.done():
            await asyncio.wait({holding}, timeout=0.25)
            rss.append(peak_rss_mib(server.process.pid, "VmRSS"))
        return holding.result(), rss

    (results, rss), normal = await during_normal_traffic(server.url, hold_all)
    return {
        "holding": name,
        "outcomes": dict(collections.Counter(outcome for outcome, _ in results)),
        "held_at_most_s": round(max(seconds for _, seconds in results), 1),
        "normal_traffic": normal,
        "rss_mib": {"before": rss[0], "max": max(rss), "after": rss[-1]},
    }


def measure(args: argparse.Namespace, batching: bool, logs: Path) -> dict:
    """Load at each client count on a fresh server; with batching, then the hostile requests
    and the holding clients."""
    name = "batching" if batching else "no-batching"
    options = [] if batching else ["--no-batching"]
    server = start_server(args.run_dir, options, logs / f"{name}.log")
    try:
        runs = [
            {"batching": batching, **asyncio.run(load(server.url, c, args.requests))}
            for c in args.clients
        ]
        result = {"load": runs, "peak_rss_mib_after_load": peak_rss_mib(server.process.pid)}
        if batching:
            result.update(asyncio.run(hostile_under_load(server.url)))
            result["peak_rss_mib_after_hostile"] = peak_rss_mib(server.process.pid)
            result["holding"] = [
                asyncio.run(holding_under_load(server, name, holder))
                for name, holder in holders(server.url, args.hold_clients).items()
            ]
    finally:
        stop_server(server)
    return result


def markdown(results: dict) -> str:
    lines = [
        f"# gptclf serve under load: {results['run_dir']}",
        "",
        f"{results['requests_per_client']} single-message requests per client; "
        f"{results['cpu_count']} CPU cores; client and server on the same machine.",
        "",
        "| micro-batching | clients | requests | errors | requests/s | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for part in ("batching", "no_batching"):
        for run in results[part]["load"]:
            lines.append(
                f"| {'on' if run['batching'] else 'off'} | {run['clients']} | {run['requests']} | "
                f"{run['errors']} | {run['requests_per_s']} | {run['p50_ms']} | {run['p99_ms']} |"
            )
    lines += [
        "",
        "Hostile requests while normal clients keep sending (micro-batching on):",
        "",
        "| request | status | 4xx | answer | seconds |",
        "| --- | ---: | --- | --- | ---: |",
    ]
    for h in results["batching"]["hostile"]:
        answer = h["answer"].replace("|", "\\|")[:90]
        lines.append(
            f"| {h['request']} | {h['status']} | {'yes' if h['ok'] else 'NO'} | {answer} | "
            f"{h['seconds']} |"
        )
    normal = results["batching"]["normal_traffic"]
    lines += [
        "",
        f"Normal traffic meanwhile: {normal['requests']} requests from {normal['clients']} "
        f"clients, {normal['errors']} errors, p50 {normal['p50_ms']} ms, "
        f"p99 {normal['p99_ms']} ms.",
        "",
        "| server | peak RSS after load (MiB) | after hostile requests (MiB) |",
        "| --- | ---: | ---: |",
        f"| micro-batching on | {results['batching']['peak_rss_mib_after_load']} | "
        f"{results['batching']['peak_rss_mib_after_hostile']} |",
        f"| micro-batching off | {results['no_batching']['peak_rss_mib_after_load']} | - |",
        *holding_table(results["batching"]["holding"]),
    ]
    return "\n".join(lines) + "\n"


def holding_table(phases: list[dict]) -> list[str]:
    """The markdown lines of the holding clients' phases."""
    lines = [
        f"\nClients that try to hold the server, each kind at once while {HOSTILE_TRAFFIC_CLIENTS} "
        "normal clients keep sending (server defaults: --timeout-s 10, --keep-alive-s 5):\n",
        "| holding clients | what came of them | held at most (s) | normal requests | "
        "normal errors | normal p50 / p99 ms | server RSS before / max / after (MiB) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for phase in phases:
        normal, rss = phase["normal_traffic"], phase["rss_mib"]
        outcomes = ", ".join(f"{count} {what}" for what, count in phase["outcomes"].items())
        lines.append(
            f"| {phase['holding']} | {outcomes} | {phase['held_at_most_s']} | "
            f"{normal['requests']} | {normal['errors']} | {normal['p50_ms']} / "
            f"{normal['p99_ms']} | {rss['before']} / {rss['max']} / {rss['after']} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", default=Path("runs/demo"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--hold-clients", type=int, default=10, help="scale of the holding clients (10: 50, 200)"
    )
    args = parser.parse_args()
    if not (args.run_dir / "config.json").is_file():
        raise SystemExit(f"{args.run_dir}: not a trained model (make demo trains runs/demo)")
    with tempfile.TemporaryDirectory() as logs:
        results = {
            "run_dir": str(args.run_dir),
            "requests_per_client": args.requests,
            "cpu_count": os.cpu_count(),
            "batching": measure(args, True, Path(logs)),
            "no_batching": measure(args, False, Path(logs)),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_load.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.out / "serve_load.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
