"""uvicorn's h11 protocol with the two guards uvicorn lacks: a deadline for a request's headers,
and a hard cap on open connections."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, where a request's headers must arrive within ``header_timeout_s``
    of its first byte (or of the connection's opening): else the answer is 408, or for a
    connection that sent nothing a quiet close. A connection beyond ``max_connections`` is
    answered 503 and closed at once, so that connections never exhaust the open files (uvicorn's
    ``limit_concurrency`` answers 503 to requests, but keeps the connections open)."""

    def __init__(self, *args: Any, header_timeout_s: float, max_connections: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Take the connection, unless there are too many; its headers are now awaited. Small
        writes go out at once (TCP_NODELAY: asyncio sets it only on sockets made with an
        explicit TCP protocol number, which the listening socket is not): otherwise an answer's
        body waits for the client's delayed acknowledgement of its headers, some 40 ms."""
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._answer_and_close(503, "too many connections; try again later")
            return
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        """The first byte of a request starts its headers' deadline; complete headers end it."""
        if self._header_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        """As uvicorn does; part of a next request already here starts its headers' deadline."""
        super().on_response_complete()
        waiting = self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]
        if waiting and not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """As uvicorn does, with no deadline left behind."""
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        """(Re)start the wait for a request's headers."""
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(
            self.header_timeout_s, self._header_deadline_passed
        )

    def _disarm_header_deadline(self) -> None:
        """Stop waiting for a request's headers."""
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        """Close a connection still without a request's headers: 408 if part of them came."""
        self._header_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:
            message = f"the request headers did not arrive within {self.header_timeout_s:g} s"
            self._answer_and_close(408, message)
        else:
            self.transport.close()

    def _answer_and_close(self, status: int, message: str) -> None:
        """Answer ``{"error": message}`` with ``status`` outside any request cycle, and close."""
        body = json.dumps({"error": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            output = self.conn.send(
                h11.Response(status_code=status, headers=headers, reason=STATUS_PHRASES[status])
            )
            output += self.conn.send(h11.Data(data=body)) + self.conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:  # a response has begun after all: only close
            output = b""
        self.transport.write(output)
        self.transport.close()
