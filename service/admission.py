"""Admission control: whether an inference request may start, decided before its body is read, and how long it may
wait for the model.

Refusing late is expensive: a 256-image JSON batch costs a few milliseconds to parse, and under overload a server
that parses every request before finding its queue full spends its CPU on work it then throws away (measured:
goodput fell from 14,360 to ~900 images/s at 64 such clients). So a request is refused at its start, before its
body is read, when it would not fit beside what is already admitted:

- at most `max_requests` requests at work at once (their body read: parsed, decoded, queued or in the model);
- the images in flight within `image_capacity`, the batching queue's capacity, so that admitted work finds room.

What a request counts for grows as it is known better: while a large body (over 64 KiB) arrives, the most images
its declared Content-Length could hold; once the body is in, what its bytes show (`images_in_body` in service/inputs.py,
before parsing); once parsed or decoded, its real count. The first of these is only a reservation, and it lapses
after UPLOAD_GRACE_SECONDS: a fast client's body is in long before (476 KB over loopback: milliseconds), while a
client that declares a large body and trickles it in would otherwise lock everyone else out for as long as the
connection limits let it live. A refusal is 503 `overloaded` with `Retry-After`, costing microseconds; nginx
retries it on the next replica.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import NamedTuple

from service.errors import DeadlineExceeded, InvalidRequest, Overloaded
from service.payloads import MIN_JSON_IMAGE_BYTES

UPLOAD_GRACE_SECONDS = 1.0
# uvicorn buffers 64 KiB of a body before it stops reading, and the JSON in a body that size parses in well under a
# millisecond: a larger body is worth counting before it is read and parsed, and a refused one costs real reading.
LARGE_BODY_BYTES = 64 * 1024


class Admission:
    """Counts the requests at work, the images they hold and the reservations of those still uploading; no locks:
    it lives on the event loop."""

    def __init__(self, *, max_requests: int, image_capacity: int, max_images_per_request: int) -> None:
        self.max_requests = max_requests
        self.image_capacity = image_capacity
        self.max_images_per_request = max_images_per_request
        self.requests = 0  # at work
        self.images = 0  # held by the requests at work
        self.reserved = 0  # reserved by requests still uploading, within their grace
        self.refused = 0
        self._uploads: deque[Ticket] = deque()  # oldest first: reservations lapse in this order

    def admit(self, declared_bytes: int | None) -> Ticket:
        """A ticket reserving what a body of `declared_bytes` (None: chunked, as large as allowed) could hold, or
        Overloaded if that would not fit. Use the ticket as a context manager: it is given back when the block ends."""
        estimate = self.estimated_images(declared_bytes)
        if self._uploads:
            self._lapse_reservations(time.monotonic())
        if declared_bytes is not None and declared_bytes <= LARGE_BODY_BYTES:
            # Arrives in a read or two and parses in well under a millisecond: counted once it is parsed.
            self._check_room(estimate, others=self.images + self.reserved, new_request=True)
            return Ticket(self, reserved=0, since=0.0)
        now = time.monotonic()
        self._check_room(estimate, others=self.images + self.reserved, new_request=True)
        ticket = Ticket(self, reserved=estimate, since=now)
        self.reserved += estimate
        self._uploads.append(ticket)
        return ticket

    def estimated_images(self, body_bytes: int | None) -> int:
        """The most JSON pixel images a body of this size can hold; image files are larger, so this errs on the
        safe side until the body shows what it holds."""
        if body_bytes is None:
            return self.max_images_per_request
        return max(1, min(self.max_images_per_request, math.ceil(body_bytes / MIN_JSON_IMAGE_BYTES)))

    def _lapse_reservations(self, now: float) -> None:
        uploads = self._uploads
        while uploads and now - uploads[0].since > UPLOAD_GRACE_SECONDS:
            uploads.popleft().release_reservation()

    def _check_room(self, images: int, *, others: int, new_request: bool) -> None:
        """Overloaded unless one more request at work (if new) and `images` beside `others` fit. A request alone
        always fits, however large, or it could never be served."""
        if new_request and self.requests >= self.max_requests:
            self._refuse(f"{self.requests} requests at work, the limit is {self.max_requests}")
        if others > 0 and others + images > self.image_capacity:
            self._refuse(f"{others} images in flight, capacity {self.image_capacity}")

    def _refuse(self, why: str) -> None:
        self.refused += 1
        raise Overloaded(f"the server is at capacity ({why}); retry shortly")


class Ticket:
    """An admitted request's share of the capacity: a reservation while its body arrives, then the images it holds
    at work."""

    def __init__(self, admission: Admission, *, reserved: int, since: float) -> None:
        self._admission = admission
        self.reserved = reserved
        self.since = since
        self.at_work = False
        self.images = 0

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release_reservation()
        if self.at_work:
            self._admission.requests -= 1
            self._admission.images -= self.images

    def release_reservation(self) -> None:
        self._admission.reserved -= self.reserved
        self.reserved = 0

    def hold(self, images: int) -> None:
        """Hold `images` from now on, in place of the reservation or of what was held; Overloaded if they do not
        fit beside the others."""
        self.release_reservation()
        admission = self._admission
        others = admission.images - self.images + admission.reserved
        if not self.at_work or images > self.images:
            admission._check_room(images, others=others, new_request=not self.at_work)
        if not self.at_work:
            admission.requests += 1
            self.at_work = True
        admission.images += images - self.images
        self.images = images


class Deadline(NamedTuple):
    """When a request stops being worth working on: `timeout_ms` after it arrived (None: never)."""

    expires_at: float | None
    timeout_ms: float | None

    @classmethod
    def for_request(cls, arrived_at: float, server_timeout_ms: float, client_timeout: str | None) -> Deadline:
        """The server's timeout (0: none), or the client's X-Request-Timeout-Ms when it asks for less."""
        timeout_ms = server_timeout_ms or None
        if client_timeout is not None:
            try:
                requested = float(client_timeout)
            except ValueError:
                requested = math.nan
            if not (math.isfinite(requested) and requested > 0):
                raise InvalidRequest(
                    "header X-Request-Timeout-Ms must be a positive number of milliseconds, "
                    f"got {client_timeout[:40]!r}",
                    details={"location": ["header", "X-Request-Timeout-Ms"]},
                )
            timeout_ms = requested if timeout_ms is None else min(timeout_ms, requested)
        if timeout_ms is None:
            return cls(None, None)
        return cls(arrived_at + timeout_ms / 1000, timeout_ms)

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.monotonic() if now is None else now) >= self.expires_at

    def check(self) -> None:
        if self.expired():
            raise self.error()

    def error(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"the request waited longer than its deadline of {self.timeout_ms:g} ms and was not run; "
            "retry later, or allow more time (X-Request-Timeout-Ms)",
            details={"timeout_ms": self.timeout_ms},
        )


NO_DEADLINE = Deadline(None, None)
