"""Connection guards for the server: a deadline for request headers and a cap on open connections.

Uvicorn waits forever for the rest of a half-sent request, so stalled connections pile up until the process runs out
of file descriptors and cannot accept a normal request any more. :class:`GuardedH11Protocol` (given to uvicorn as its
``http`` protocol by :func:`glmmlab.interfaces.web.server.serve`)

- closes a connection whose request line and headers are not complete within ``header_timeout`` seconds (answering
  408), on a new connection and between requests on a kept-alive one;
- keeps at most ``max_connections`` connections open: past that, the connection that has waited longest for its
  headers is closed to make room, and when every connection is busy with a request the new one gets 503.

Stalled request *bodies* are the ``Guard`` middleware's job (``body_timeout``), since only it sees the body.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 512


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\nx-frame-options: DENY\r\nx-content-type-options: nosniff\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    _header_timer: asyncio.TimerHandle | None = None
    _waiting_since: float | None = None  # when this connection began waiting for a request's headers

    @classmethod
    def configured(cls, header_timeout: float, max_connections: int) -> type["GuardedH11Protocol"]:
        return type("GuardedH11Protocol", (cls,), {"header_timeout": float(header_timeout),
                                                   "max_connections": int(max_connections)})

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._evict_a_stalled_one():
            transport.write(_raw_response(503, "Service Unavailable",
                                          "The workbench is serving as many connections as it may; try again soon."))
            transport.close()
            return
        self._await_headers()

    def _evict_a_stalled_one(self) -> bool:
        stalled = [c for c in self.connections
                   if c is not self and isinstance(c, GuardedH11Protocol) and c._waiting_since is not None]
        if not stalled:
            return False
        oldest = min(stalled, key=lambda c: c._waiting_since or 0.0)
        oldest._headers_too_slow()
        return True

    def _await_headers(self) -> None:
        self._stop_waiting()
        self._waiting_since = time.monotonic()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_waiting(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._waiting_since = None

    def _headers_too_slow(self) -> None:
        self._stop_waiting()
        if not self.transport.is_closing():
            self.transport.write(_raw_response(408, "Request Timeout",
                                               "The request headers did not arrive in time; send the request again."))
            self.transport.close()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers are complete
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._waiting_since is None:
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)
