"""How the service batches and what it accepts, declared once: ``gptclf serve`` makes its flags
from these options with :func:`gptclf.options.add_options`, and the rules check every instance."""

from __future__ import annotations

from dataclasses import dataclass

from gptclf import options
from gptclf.options import at_least, option

API_KEY_ENV = "GPTCLF_API_KEY"


@dataclass(frozen=True)
class ServeSettings:
    """How the service batches and what it accepts. Every option but ``api_key`` is a flag of
    ``gptclf serve``; the key comes from ``$GPTCLF_API_KEY``."""

    max_batch: int = option(64, "texts per model call", **at_least(1))
    max_wait_ms: float = option(5.0, "how long a batch waits to fill", **at_least(0))
    batching: bool = option(True, "compute every request alone", flags=("--no-batching",))
    max_texts: int = option(256, "texts per request", **at_least(1))
    max_chars: int = option(10_000, "characters per text", **at_least(1))
    max_body_bytes: int = option(1_000_000, "request body size", **at_least(1))
    api_key: str | None = option(
        None, 'when set, /v1/* needs "Authorization: Bearer <key>"', cli=False
    )

    def __post_init__(self) -> None:
        options.check(self)
