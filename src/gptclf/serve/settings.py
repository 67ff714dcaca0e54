"""How the service batches, what it accepts and how long it waits for clients, declared once:
``gptclf serve`` makes its flags from these options with :func:`gptclf.options.add_options`, and
the rules check every instance."""

from __future__ import annotations

from dataclasses import dataclass

from gptclf import options
from gptclf.errors import GptclfError
from gptclf.onnx_runtime import runtime_option
from gptclf.options import at_least, option

API_KEY_ENV = "GPTCLF_API_KEY"
POSITIVE = {"valid": lambda value: value > 0, "rule": "more than 0"}


def _host_patterns(hosts: tuple[str, ...]) -> bool:
    """Host names as Starlette's TrustedHostMiddleware takes them: ``*``, ``*.domain``, or a name
    or address with no ``*``, no whitespace and no port (an IPv6 address has two colons or
    more)."""
    return all(
        host == "*"
        or (
            bool(name := host.removeprefix("*."))
            and "*" not in name
            and not any(c.isspace() for c in name)
            and name.count(":") != 1
        )
        for host in hosts
    )


@dataclass(frozen=True)
class ServeSettings:
    """How the service batches, what it accepts and how long it waits. Every option but
    ``api_key`` is a flag of ``gptclf serve``; the key comes from ``$GPTCLF_API_KEY``."""

    runtime: str = runtime_option()
    max_batch: int = option(64, "texts per model call", **at_least(1))
    max_batch_tokens: int = option(
        512,
        "padded tokens per model call (texts times the longest); more are split into turns",
        **at_least(1),
    )
    max_wait_ms: float = option(
        0.0,
        "how long a batch waits to fill (0: it starts when the model is free, and requests that "
        "arrive while it computes form the next batch)",
        **at_least(0),
    )
    batching: bool = option(True, "compute every request alone", flags=("--no-batching",))
    examples: bool = option(
        True,
        "keep the run's texts private: no example of each class from its validation split in "
        "GET /v1/model and on the page",
        flags=("--no-examples",),
    )
    max_texts: int = option(256, "texts per request", **at_least(1))
    max_chars: int = option(10_000, "characters per text", **at_least(1))
    max_chunks: int = option(
        8, "chunks per text, where the model reads long texts in chunks (--chunks)", **at_least(1)
    )
    max_body_bytes: int = option(1_000_000, "request body size", **at_least(1))
    max_queue: int = option(
        512, "texts waiting for the model; more: 503 with Retry-After", **at_least(1)
    )
    timeout_s: float = option(
        10.0, "seconds a client has to send a request's headers, then its body (408)", **POSITIVE
    )
    keep_alive_s: float = option(5.0, "seconds an idle connection is kept open", **at_least(0))
    max_connections: int = option(
        1000, "open connections; more: 503 (kept below the open-file limit)", **at_least(1)
    )
    shutdown_grace_s: float = option(
        10.0, "seconds requests in flight get to finish at shutdown", **at_least(0)
    )
    allowed_hosts: tuple[str, ...] | None = option(
        None,
        "Host header names accepted, '*' for any "
        "(default: localhost, 127.0.0.1, ::1 and the address served on)",
        valid=_host_patterns,
        rule="host names, '*' or '*.domain', without ports",
        metavar="HOST",
    )
    api_key: str | None = option(
        None, 'when set, /v1/* needs "Authorization: Bearer <key>"', cli=False
    )

    def __post_init__(self) -> None:
        options.check(self)
        if self.api_key is not None:
            check_api_key(self.api_key)


def check_api_key(key: str) -> None:
    """Refuse a key that no client could send back as it is, naming the problem (never the
    key): empty, whitespace at either end, a control character, or one outside Latin-1."""
    problem = None
    if not key:
        problem = "is empty"
    elif key != key.strip():
        problem = "starts or ends with whitespace (a trailing newline?); remove it"
    else:
        position = next(
            (i for i, c in enumerate(key) if ord(c) > 0xFF or ord(c) < 0x20 or c == "\x7f"), None
        )
        if position is not None:
            what = (
                "a character outside Latin-1"
                if ord(key[position]) > 0xFF
                else "a control character"
            )
            problem = f"has {what} at position {position + 1}, which an HTTP header cannot carry"
    if problem:
        raise GptclfError(f"${API_KEY_ENV} {problem}")
