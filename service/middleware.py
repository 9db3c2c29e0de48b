"""Per-request plumbing as one pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware):

- a request id, taken from the client's X-Request-ID when it sent a sane one, echoed on every response;
- X-Served-By: the replica that answered, so load balancing can be seen;
- the body-size limit: a declared Content-Length over the limit is refused before a byte is read, and a
  chunked body is cut off as soon as it passes the limit.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.encoding import json_response
from service.errors import PayloadTooLarge, envelope

CLIENT_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, replica_name: str) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.replica_name = replica_name
        self._replica_header = (b"x-served-by", replica_name.encode("latin-1", "replace"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["replica"] = self.replica_name
        tags = [(b"x-request-id", request_id.encode()), self._replica_header]

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] not in (b"x-request-id", b"x-served-by")]
                message["headers"] = headers + tags
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            error = PayloadTooLarge(
                f"the body is {declared:,} bytes; the limit is {self.max_body_bytes:,} bytes",
                details={"bytes": declared, "limit": self.max_body_bytes},
            )
            response = json_response(envelope(error, request_id), status_code=413, headers={"Connection": "close"})
            await response(scope, receive, send_tagged)
            return
        await self.app(scope, _limited(receive, self.max_body_bytes) if declared is None else receive, send_tagged)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and CLIENT_REQUEST_ID.match(value):
            return value.decode()
    return uuid.uuid4().hex


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


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
