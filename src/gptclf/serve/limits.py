"""What a request may be: the body size, JSON of the right shape, and texts within the limits.
Every refusal is one JSON error naming the problem, made before the model runs."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptclf.serve.schemas import ClassifyRequest, RequestBody
from gptclf.serve.settings import ServeSettings

LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """The service's error answer: ``{"error": message}`` with ``status``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def declared_length(headers: Headers) -> int | None:
    """The body size a request's Content-Length declares; None without a valid one."""
    value = headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None


class HttpMiddleware:
    """ASGI middleware acting on HTTP requests (:meth:`handle`); anything else, such as the
    lifespan, passes through."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle an HTTP request; pass anything else on."""
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer, or pass on to ``self.app``, an HTTP request."""
        raise NotImplementedError


class BodySizeLimit(HttpMiddleware):
    """ASGI middleware reading each request body before the app does, refusing one larger than
    ``max_bytes`` with 413: at once when declared by Content-Length, else as soon as the
    streamed bytes pass the limit, so no more than the limit is ever held. A body that has not
    arrived within ``timeout_s`` is a 408, and the connection is closed."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float):
        super().__init__(app)
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its body read, unless the body is too large or too slow."""
        declared = declared_length(Headers(scope=scope))
        if declared is not None and declared > self.max_bytes:
            message = f"the request body has {declared:,} bytes; the limit is {self.max_bytes:,}"
            await error_response(413, message)(scope, receive, send)
            return
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout_s)
        except ClientGone:
            return
        except TimeoutError:
            message = f"the request body did not arrive within {self.timeout_s:g} s"
            await error_response(408, message, {"Connection": "close"})(scope, receive, send)
            return
        if body is None:
            message = f"the request body is larger than the limit of {self.max_bytes:,} bytes"
            await error_response(413, message)(scope, receive, send)
            return
        await self.app(scope, _replaying(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class ClientGone(Exception):
    """The client disconnected before its answer: before sending its whole body, or while its
    texts waited for the model."""


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the already read body first, then defers to the server's."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def parse_request(
    raw: bytes, content_type: str | None, schema: type[RequestBody] = ClassifyRequest
) -> RequestBody:
    """The request body as a ``schema`` (``ClassifyRequest``, ``ExplainRequest``); anything else
    is a 415 or 422 error naming the problem."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(415, "send the body as JSON with Content-Type: application/json")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise HTTPException(422, f"the body is not UTF-8 (byte {exc.start} is invalid)") from exc
    except RecursionError as exc:
        raise HTTPException(422, "the body's JSON is nested too deeply") from exc
    except ValueError as exc:
        raise HTTPException(422, f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise HTTPException(422, f"the body must be a JSON object: {schema.SHAPE}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(422, validation_message(exc)) from exc


def validation_message(error: ValidationError) -> str:
    """The first problem pydantic found, as ``where: what``, and how many others there are."""
    problems = error.errors()
    first = problems[0]
    where = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
    ).lstrip(".")
    message = first["msg"].removeprefix("Value error, ")
    others = len(problems) - 1
    more = f" (and {others} more problem{'s' if others > 1 else ''})" if others else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"


def checked_texts(
    request: ClassifyRequest, settings: ServeSettings
) -> tuple[list[str], list[str] | None, Callable[[int], str]]:
    """The request's texts and their pairs (None: none given) within the limits, and how
    errors name text ``i``."""
    if request.text is not None:
        texts, where = [request.text], lambda i: "text"
        pairs = None if request.pair is None else [request.pair]
    else:
        texts, where, pairs = request.texts, lambda i: f"texts[{i}]", request.pairs
    if not texts:
        raise HTTPException(422, '"texts" is empty; give at least one text')
    if len(texts) > settings.max_texts:
        raise HTTPException(
            422, f"the request has {len(texts):,} texts; the limit is {settings.max_texts:,}"
        )
    if pairs is not None and len(pairs) != len(texts):
        raise HTTPException(422, f'{len(texts)} texts need {len(texts)} "pairs", not {len(pairs)}')
    for i, text in enumerate(texts):
        check_text(text, where(i), settings)
        if pairs is not None:
            check_text(pairs[i], f"the pair of {where(i)}", settings)
    return texts, pairs, where


def check_text(text: str, name: str, settings: ServeSettings) -> None:
    """Refuse a text over the length limit, or with a lone surrogate (which JSON allows but no
    encoding can hold)."""
    if len(text) > settings.max_chars:
        raise HTTPException(
            422, f"{name} has {len(text):,} characters; the limit is {settings.max_chars:,}"
        )
    if LONE_SURROGATE.search(text):
        raise HTTPException(422, f"{name} is not valid Unicode (a lone surrogate)")
