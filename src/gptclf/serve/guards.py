"""ASGI middleware that decides from the headers alone, before any body is read: the API key,
and how an answer given before the body was read ends (a lingering close, as nginx does)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptclf.serve.limits import HttpMiddleware, declared_length, error_response

PROTECTED_PREFIX = "/v1/"
CLOSE = (b"connection", b"close")


class ApiKeyGuard(HttpMiddleware):
    """Refuses a request to ``/v1/*`` without ``Authorization: Bearer <key>`` with 401, from its
    headers alone: the body of such a request is never read (the key itself was checked at
    start-up to be Latin-1 text that a header can carry)."""

    def __init__(self, app: ASGIApp, key: str):
        super().__init__(app)
        self.expected = key.encode("latin-1")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401 at once, or pass the request on."""
        if scope["path"].startswith(PROTECTED_PREFIX) and not self._authorized(scope):
            message = "missing or wrong API key: send Authorization: Bearer <key>"
            response = error_response(401, message, {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        """Whether the request's bearer token is the key (compared in constant time)."""
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        given = token.encode("latin-1") if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(given, self.expected)


@dataclass
class _Body:
    """How far the server has read a request's body."""

    declared: int | None  # Content-Length; None when chunked
    complete: bool  # read to its end (or there is none)
    expects_continue: bool  # the client waits for "100 Continue" before sending it
    asked: bool = False  # the app asked for it, so the server sent "100 Continue"

    @classmethod
    def of(cls, headers: Headers) -> _Body:
        """The body a request with ``headers`` announces, none read yet."""
        declared = declared_length(headers)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        return cls(
            declared=declared,
            complete=not chunked and not declared,
            expects_continue=headers.get("expect", "").lower() == "100-continue",
        )

    def read(self, message: Message) -> None:
        """Note a message given to the app."""
        self.asked = True
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.complete = True

    def worth_draining(self, status: int, max_bytes: int) -> bool:
        """Whether reading the rest helps the client: it is sending it (not waiting for a 100
        Continue that never came, nor too slow: 408) and it is not declared over ``max_bytes``."""
        if self.expects_continue and not self.asked:
            return False
        return status != 408 and (self.declared is None or self.declared <= max_bytes)


class LingeringClose(HttpMiddleware):
    """A response that begins before the request body has been read to its end (a 401, 404,
    413, ...) is sent with ``Connection: close`` and ended only once the rest of the body has
    been read and discarded, up to ``max_bytes`` and for at most ``seconds``, as nginx's
    lingering close does: a client that writes its whole body before reading (urllib, requests)
    then reads the answer instead of a connection reset, and nothing of the body is held."""

    def __init__(self, app: ASGIApp, max_bytes: int, seconds: float):
        super().__init__(app)
        self.max_bytes = max_bytes
        self.seconds = seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, watching how much of the body it reads and what it answers."""
        body = _Body.of(Headers(scope=scope))
        drain = False

        async def watched_receive() -> Message:
            """The server's ``receive``, noting how far the body has been read."""
            message = await receive()
            body.read(message)
            return message

        async def lingering_send(message: Message) -> None:
            """The server's ``send``; an early answer closes, ended once the body is drained."""
            nonlocal drain
            if message["type"] == "http.response.start" and not body.complete:
                message = {**message, "headers": _closing(message.get("headers", []))}
                drain = body.worth_draining(message["status"], self.max_bytes)
            elif message["type"] == "http.response.body" and drain and not message.get("more_body"):
                await send({**message, "more_body": True})
                await self._drain(receive)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, watched_receive, lingering_send)

    async def _drain(self, receive: Receive) -> None:
        """Read and discard the rest of the body: to its end, ``max_bytes`` or ``seconds``."""

        async def discard() -> None:
            """Read pieces of the body and drop them, until its end or ``max_bytes``."""
            size = 0
            while size <= self.max_bytes:
                piece = await _discarded(receive)
                if piece is None:
                    return
                size += piece

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(discard(), self.seconds)


async def _discarded(receive: Receive) -> int | None:
    """The size of the next piece of the body, read and dropped (no reference to it outlives
    this call, so a stalled client holds none of it); None at the body's end."""
    message = await receive()
    if message["type"] == "http.disconnect" or not message.get("more_body", False):
        return None
    return len(message.get("body", b""))


def _closing(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``Connection: close``."""
    others = [(name, value) for name, value in headers if name.lower() != b"connection"]
    return [*others, CLOSE]
