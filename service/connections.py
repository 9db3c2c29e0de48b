"""The HTTP connection guard: limits that only the protocol layer can enforce, before the app sees a request.

uvicorn's httptools protocol sets no limit on the size of the request line or the headers (and accumulates
them by concatenation, in quadratic time), arms its keep-alive timer only after a first response, and waits
for a request's headers and body forever. `GuardedHttpToolsProtocol` is that protocol with five limits added:

- the URL longer than `max_url_bytes`: 414, and the connection is closed;
- the request line and headers larger than `max_header_bytes`: 431, closed (checked as bytes arrive, so an
  endless header is cut off after one read past the limit);
- a connection that sends no request for `idle_timeout_seconds` (a new one, or between keep-alive requests):
  closed without a word;
- headers not complete `header_timeout_seconds` after their first byte: 408, closed;
- a body that arrives slower than `body_timeout_seconds` plus one second per `body_min_rate` bytes: 408,
  closed (so a large upload from a slow phone is fine, a trickle of a byte per second is not).

A graceful shutdown answers a request whose body is still arriving with 503 `shutting_down` at once, instead
of waiting out the drain for it. Rejections are the service's error envelope, with a request id, followed by a
lingering close (as nginx does): the server sends FIN and discards what the client still sends for up to
LINGER_SECONDS, because closing with unread data sends a TCP reset, and a reset makes the client's kernel drop
the answer it had already received.

Measured against the alternative, uvicorn's pure-Python h11 parser (`h11_max_incomplete_event_size`, no
header or body timeouts), in the README's "Connection limits" section.
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import HeaderFieldsTooLarge, RequestTimeout, ServiceError, ShuttingDown, UriTooLong, envelope

logger = logging.getLogger("service.connections")

# The request line's fixed parts ("POST  HTTP/1.1\r\n") and each header's ": " and "\r\n".
REQUEST_LINE_OVERHEAD = 16
HEADER_OVERHEAD = 4
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class ConnectionLimits:
    max_url_bytes: int = 16 * 1024
    max_header_bytes: int = 32 * 1024
    idle_timeout_seconds: float = 5.0
    header_timeout_seconds: float = 5.0
    body_timeout_seconds: float = 10.0
    body_min_rate: float = 64 * 1024  # bytes per second, beyond the first body_timeout_seconds
    served_by: str = ""


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` option, bound to these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *arguments: Any, **keywords: Any) -> None:
        super().__init__(*arguments, **keywords)
        self.timeout_keep_alive = self.limits.idle_timeout_seconds  # type: ignore[assignment]  # uvicorn's between-requests timer
        self._in_head = False
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_body = False
        self._body_started = 0.0
        self._body_received = 0
        self._body_timer: asyncio.TimerHandle | None = None
        self._rejected = False  # answered by the guard: nothing more is parsed or answered on this connection
        self._read_bytes = 0  # the size of the read being parsed

    # A new connection gets the idle timer that uvicorn otherwise arms only after a response.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.limits.idle_timeout_seconds, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return  # answered and closing: what the client still sends is discarded
        self._read_bytes = len(data)
        super().data_received(data)
        if self._rejected or self.transport.is_closing():
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes + REQUEST_LINE_OVERHEAD:
                self._reject(self._headers_too_large(self._head_bytes))
                return
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.header_timeout_seconds, self._head_timed_out)
        if self._in_body and self._body_timer is None:
            self._body_started = time.monotonic()
            self._body_timer = self.loop.call_later(self.limits.body_timeout_seconds, self._check_body_progress)

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        if self._rejected:  # rejected earlier in this read: parse no further requests
            return
        self._in_head = False
        self._cancel(self._head_timer)
        self._head_timer = None
        if len(self.url) > self.limits.max_url_bytes:
            self._reject(
                UriTooLong(f"the URL is {len(self.url):,} bytes; the limit is {self.limits.max_url_bytes:,} bytes")
            )
            return
        if self._head_bytes + self._read_bytes > self.limits.max_header_bytes:  # else the head cannot be larger
            head = (
                len(self.url) + REQUEST_LINE_OVERHEAD + sum(len(n) + len(v) + HEADER_OVERHEAD for n, v in self.headers)
            )
            if head > self.limits.max_header_bytes:
                self._reject(self._headers_too_large(head))
                return
        super().on_headers_complete()
        self._in_body = True
        self._body_received = 0

    def on_body(self, body: bytes) -> None:
        if self._rejected:
            return
        self._body_received += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        self._in_body = False
        self._cancel(self._body_timer)
        self._body_timer = None
        super().on_message_complete()

    def shutdown(self) -> None:
        """A graceful shutdown does not wait for a body that is still arriving: it answers 503 at once."""
        if self._in_body and self.cycle is not None and not self.cycle.response_started:
            self._reject(ShuttingDown("the server is shutting down; send the request again"))
            return
        super().shutdown()

    # Timers
    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self._rejected and not self.transport.is_closing():
            seconds = self.limits.header_timeout_seconds
            self._reject(RequestTimeout(f"the request headers were not complete within {seconds:g} s"))

    def _check_body_progress(self) -> None:
        """The body must keep up: body_timeout_seconds, plus a second for every body_min_rate bytes received."""
        self._body_timer = None
        if not self._in_body or (self._rejected or self.transport.is_closing()):
            return
        allowed = self.limits.body_timeout_seconds + self._body_received / self.limits.body_min_rate
        remaining = self._body_started + allowed - time.monotonic()
        if remaining > 0 or self.flow.read_paused:  # paused: the server is not reading, the client is not slow
            self._body_timer = self.loop.call_later(max(remaining, 0.5), self._check_body_progress)
            return
        if self.cycle is not None and self.cycle.response_complete:
            self.transport.close()  # answered already (e.g. refused unread): just stop taking the rest
            return
        self._reject(
            RequestTimeout(
                f"the request body arrived too slowly ({self._body_received:,} bytes in {allowed:.0f} s); "
                f"send it within {self.limits.body_timeout_seconds:g} s, or at {self.limits.body_min_rate:,.0f} "
                "bytes/s at least"
            )
        )

    def _headers_too_large(self, size: int) -> ServiceError:
        return HeaderFieldsTooLarge(
            f"the request line and headers are over {size:,} bytes; the limit is {self.limits.max_header_bytes:,}"
        )

    def _reject(self, error: ServiceError) -> None:
        """Answer with the error envelope and close the connection; an app still running sees a disconnect."""
        self._in_head = self._in_body = False
        self._cancel_timers()
        cycle = self.cycle if self.cycle is not None and not self.cycle.response_complete else None
        state = cycle.scope.get("state", {}) if cycle is not None else {}
        request_id = state.get("request_id") or os.urandom(16).hex()
        if cycle is None or not cycle.response_started:
            self.transport.write(self._raw_response(error, request_id))
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        self._close_lingering()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        logger.info("closed the connection from %s: %s %s", client, error.status_code, error.message)

    def _close_lingering(self) -> None:
        self._rejected = True
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.flow.resume_reading()
        self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _raw_response(self, error: ServiceError, request_id: str) -> bytes:
        body = orjson.dumps(envelope(error, request_id))
        headers = {
            "content-type": "application/json",
            "content-length": str(len(body)),
            "connection": "close",
            "x-request-id": request_id,
            **({"x-served-by": self.limits.served_by} if self.limits.served_by else {}),
            **{name.lower(): value for name, value in error.headers.items()},
        }
        phrase = http.HTTPStatus(error.status_code).phrase
        lines = [f"HTTP/1.1 {error.status_code} {phrase}", *(f"{name}: {value}" for name, value in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            self._cancel(timer)
        self._head_timer = self._body_timer = None

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()
