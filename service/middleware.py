"""Per-request plumbing as one pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware):

- a request id, taken from the client's X-Request-ID when it sent a sane one, echoed on every response, and the
  time the request arrived (its deadline counts from there);
- X-Served-By: the replica that answered, so load balancing can be seen;
- the body-size limit: a declared Content-Length over the limit is refused before a byte is read, and a
  chunked body is cut off as soon as it passes the limit;
- the last line of defence: a fault of ours that escaped every handler is logged with its traceback and answered
  with the 500 envelope here, and the connection stays usable (Starlette's own last handler re-raises, and then
  uvicorn closes a keep-alive connection without saying so; the client's next request on it fails). A client
  that went away is logged as one INFO line, not as a fault.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.encoding import json_response
from service.errors import ClientGone, ErrorBody, PayloadTooLarge, ServiceError, native_error_body
from service.metrics import UNKNOWN, Metrics

logger = logging.getLogger("service.errors")
access_logger = logging.getLogger("service.access")

CLIENT_CLOSED_REQUEST = 499  # nginx's code for a client that left before the answer
CLIENT_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,128}$")
CLIENT_TIMEOUT_HEADER = b"x-request-timeout-ms"


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        replica_name: str,
        error_bodies: tuple[tuple[str, ErrorBody], ...] = (),
        metrics: Metrics | None = None,
        access_log: bool = False,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.replica_name = replica_name
        self.error_bodies = error_bodies  # (path prefix, how a protocol renders its errors)
        self.metrics = metrics
        self.access_log = access_log
        self._replica_header = (b"x-served-by", replica_name.encode("latin-1", "replace"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, declared, client_timeout = _read_headers(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["replica"] = self.replica_name
        state["arrived_at"] = time.monotonic()
        state["declared_bytes"] = declared
        state["client_timeout"] = client_timeout
        render: ErrorBody = native_error_body
        for prefix, protocol_render in self.error_bodies:
            if scope["path"].startswith(prefix):
                render = state["error_body"] = protocol_render
                break
        tags = [(b"x-request-id", request_id.encode()), self._replica_header]
        status_sent = 0  # the response's status once it has started

        async def send_tagged(message: Message) -> None:
            nonlocal status_sent
            if message["type"] == "http.response.start":
                status_sent = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] not in (b"x-request-id", b"x-served-by")]
                message["headers"] = headers + tags
            await send(message)

        if declared is not None and declared > self.max_body_bytes:
            error = PayloadTooLarge(
                f"the body is {declared:,} bytes; the limit is {self.max_body_bytes:,} bytes",
                details={"bytes": declared, "limit": self.max_body_bytes},
            )
            status, body = render(error, request_id)
            response = json_response(body, status_code=status, headers={"Connection": "close"})
            await response(scope, receive, send_tagged)
            self._account(scope, state, status_sent)
            return
        try:
            await self.app(scope, _limited(receive, self.max_body_bytes) if declared is None else receive, send_tagged)
        except (ClientDisconnect, ClientGone) as gone:
            logger.info("client disconnected before it was answered (%s %s, request %s)%s",
                        scope["method"], scope["path"], request_id, f": {gone}" if str(gone) else "")  # fmt: skip
            if not status_sent:  # nobody reads it; it keeps the server from answering 500 for us
                await Response(status_code=CLIENT_CLOSED_REQUEST)(scope, receive, send_tagged)
        except Exception:
            logger.exception("unhandled error on %s %s (request %s)", scope["method"], scope["path"], request_id)
            if status_sent:
                self._account(scope, state, status_sent)
                raise  # the response is half sent: only closing the connection can tell the client
            fault = ServiceError(f"internal server error; quote the request id when reporting it: {request_id}")
            status, body = render(fault, request_id)
            await json_response(body, status_code=status)(scope, receive, send_tagged)
        self._account(scope, state, status_sent)

    def _account(self, scope: Scope, state: dict[str, Any], status: int) -> None:
        """The request's metrics (inference requests only: the protocols mark theirs) and its access line."""
        protocol = state.get("protocol")
        if protocol is None and not self.access_log:
            return
        seconds = time.monotonic() - state["arrived_at"]
        stats = state.get("stats")
        model, version = (stats.model, stats.version) if stats is not None else (UNKNOWN, "")
        if protocol is not None and self.metrics is not None:
            self.metrics.request(protocol, model, version, str(status), seconds, verdicts=stats and stats.verdicts())
        if self.access_log:
            client = scope.get("client")
            fields = {
                "request_id": state["request_id"],
                "method": scope["method"],
                "path": scope["path"],
                "protocol": protocol,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "queue_ms": round(stats.queue_seconds * 1000, 3) if stats is not None else None,
                "model": model if protocol is not None else None,
                "version": version or None,
                "images": stats.images if stats is not None else None,
                "not_digits": stats.not_digits if stats is not None else None,
                "bytes_in": state.get("declared_bytes"),
                "client": client[0] if client else None,
            }
            access_logger.info(
                "%s %s %s %.1f ms%s", scope["method"], scope["path"], status, seconds * 1000,
                f" {model}/{version} {stats.images} images, queued {stats.queue_seconds * 1000:.1f} ms"
                if stats is not None else "",
                extra=fields,
            )  # fmt: skip


def arrival_time(scope: Scope) -> float:
    """When the request reached the app (time.monotonic), as the middleware noted it."""
    state = scope.get("state", {})
    return float(state["arrived_at"]) if "arrived_at" in state else time.monotonic()


def _read_headers(scope: Scope) -> tuple[str, int | None, str | None]:
    """In one pass over the headers: the request id (the client's, when sane), the declared Content-Length (None
    for a chunked body, or one that is not a number) and the client's X-Request-Timeout-Ms."""
    request_id: str | None = None
    declared: int | None = None
    client_timeout: str | None = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None
        elif name == b"x-request-id" and CLIENT_REQUEST_ID.match(value):
            request_id = value.decode()
        elif name == CLIENT_TIMEOUT_HEADER:
            client_timeout = value.decode("latin-1")
    return request_id or os.urandom(16).hex(), declared, client_timeout  # urandom: uuid4().hex at a third of its cost


def declared_body_bytes(scope: Scope) -> int | None:
    """The Content-Length the client declared, as the middleware read it; None for a chunked body."""
    declared: int | None = scope.get("state", {}).get("declared_bytes")
    return declared


def client_timeout(scope: Scope) -> str | None:
    """The client's X-Request-Timeout-Ms header, as the middleware read it."""
    value: str | None = scope.get("state", {}).get("client_timeout")
    return value


def _limited(receive: Receive, limit: int) -> Receive:
    """A receive that raises PayloadTooLarge once a body without Content-Length passes the limit."""
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise PayloadTooLarge(f"the body passed the limit of {limit:,} bytes", details={"limit": limit})
        return message

    return receive_limited
