"""Serving the app on a socket: uvicorn configured so that no client can hold the service
(deadlines for headers, body and idle connections, a cap on connections below the open-file
limit, a short backlog, a bounded graceful shutdown), the Host header checked, and answers given
before a body was read ended by a lingering close."""

from __future__ import annotations

import contextlib
import functools
import resource
import socket
from collections.abc import Iterable

import uvicorn
from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp

from gptclf.errors import GptclfError
from gptclf.serve.guards import LingeringClose
from gptclf.serve.protocol import GuardedH11Protocol
from gptclf.serve.settings import ServeSettings

BACKLOG = 128  # connections the kernel holds until accepted; asyncio accepts as many at a time
OWN_FILES = 128  # open files kept for the process itself: model, logs, threads' pipes
DRAIN_MAX_BYTES = 64 * 2**20  # the most of an unread body read (and discarded) after an answer
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_ADDRESSES = ("0.0.0.0", "::")


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise GptclfError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc


def url_of(sock: socket.socket) -> str:
    """The ``http://`` address that ``sock`` listens on."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def connection_cap(wanted: int, open_file_limit: int | None = None) -> int:
    """``wanted`` connections, or fewer so that they, the process's own files and the refused
    connections not yet closed (asyncio accepts up to a backlog's worth per loop turn, and a
    refused one is closed a turn or two later) stay under the soft open-file limit
    (``ulimit -n``): at that limit accept() fails with EMFILE, and asyncio's accept loop logs
    and retries a backlog's worth of times per turn."""
    if open_file_limit is None:
        open_file_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if open_file_limit == resource.RLIM_INFINITY:
        return wanted
    room = open_file_limit - OWN_FILES - 2 * BACKLOG
    if room < 1:
        raise GptclfError(
            f"the open-file limit (ulimit -n) is {open_file_limit}, too low to serve; "
            f"raise it above {OWN_FILES + 2 * BACKLOG}"
        )
    return min(wanted, room)


def allowed_hosts(settings: ServeSettings, sock: socket.socket) -> list[str]:
    """The Host names accepted: ``--allowed-hosts``, else the localhost names and the address
    served on (for a wildcard address, the machine's names), IPv6 addresses in brackets."""
    if settings.allowed_hosts:
        return _bracketed(settings.allowed_hosts)
    address = sock.getsockname()[0]
    served = [socket.gethostname(), socket.getfqdn()] if address in WILDCARD_ADDRESSES else []
    return _bracketed([*LOCAL_HOSTS, address, *served])


def _bracketed(hosts: Iterable[str]) -> list[str]:
    """``hosts`` as a Host header writes them: an IPv6 address in brackets."""
    return [f"[{h}]" if ":" in h and not h.startswith("[") else h for h in dict.fromkeys(hosts)]


def guarded(app: FastAPI, sock: socket.socket) -> ASGIApp:
    """``app`` behind the Host check, with a lingering close for answers given early."""
    settings: ServeSettings = app.state.settings
    checked = TrustedHostMiddleware(app, allowed_hosts(settings, sock), www_redirect=False)
    return LingeringClose(checked, DRAIN_MAX_BYTES, settings.timeout_s)


def server_for(app: FastAPI, sock: socket.socket, log_level: str | None = None) -> uvicorn.Server:
    """A uvicorn server of ``app`` (made by ``create_app``) for ``sock``, with its settings."""
    settings: ServeSettings = app.state.settings
    cap = connection_cap(settings.max_connections)
    protocol = functools.partial(
        GuardedH11Protocol, header_timeout_s=settings.timeout_s, max_connections=cap
    )
    config = uvicorn.Config(
        guarded(app, sock),
        http=protocol,
        ws="none",
        lifespan="on",
        log_level=log_level,
        limit_concurrency=cap + 1,  # uvicorn: 503 once connections or tasks reach it
        backlog=BACKLOG,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    return uvicorn.Server(config)


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C or SIGTERM; requests in flight then get
    ``--shutdown-grace-s`` to finish, and the batcher computes what it still holds."""
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once it has stopped
        server_for(app, sock).run(sockets=[sock])
