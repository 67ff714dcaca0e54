"""What a request may be: the body size, JSON of the right shape, and texts within the limits.
Every refusal is one JSON error naming the problem, made before the model runs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptclf.serve.schemas import ClassifyRequest
from gptclf.serve.settings import ServeSettings

LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """The service's error answer: ``{"error": message}`` with ``status``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class BodySizeLimit:
    """ASGI middleware reading each request body before the app does, refusing one larger than
    ``max_bytes`` with 413: at once when declared by Content-Length, else as soon as the
    streamed bytes pass the limit, so no more than the limit is ever held."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its body read, unless the body is too large."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            message = (
                f"the request body has {int(declared):,} bytes; the limit is {self.max_bytes:,}"
            )
            await error_response(413, message)(scope, receive, send)
            return
        try:
            body = await self._read(receive)
        except _ClientGone:
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
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _ClientGone(Exception):
    """The client disconnected before sending its whole body."""


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the already read body first, then defers to the server's."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def parse_classify_request(raw: bytes, content_type: str | None) -> ClassifyRequest:
    """The request body as a ``ClassifyRequest``; anything else is a 415 or 422 error naming
    the problem."""
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
        raise HTTPException(
            422, 'the body must be a JSON object: {"text": ...} or {"texts": [...]}'
        )
    try:
        return ClassifyRequest.model_validate(data)
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
) -> tuple[list[str], Callable[[int], str]]:
    """The request's texts within the limits, and how errors name text ``i``."""
    if request.text is not None:
        texts, where = [request.text], lambda i: "text"
    else:
        texts, where = request.texts, lambda i: f"texts[{i}]"
    if not texts:
        raise HTTPException(422, '"texts" is empty; give at least one text')
    if len(texts) > settings.max_texts:
        raise HTTPException(
            422, f"the request has {len(texts):,} texts; the limit is {settings.max_texts:,}"
        )
    for i, text in enumerate(texts):
        if len(text) > settings.max_chars:
            raise HTTPException(
                422,
                f"{where(i)} has {len(text):,} characters; the limit is {settings.max_chars:,}",
            )
        _check_unicode(text, where(i))
    return texts, where


def _check_unicode(text: str, name: str) -> None:
    """Refuse a text with a lone surrogate, which JSON allows but no encoding can hold."""
    if LONE_SURROGATE.search(text):
        raise HTTPException(422, f"{name} is not valid Unicode (a lone surrogate)")
