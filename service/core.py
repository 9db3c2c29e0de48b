"""The one request path that every protocol takes, from a chosen model version to its probabilities.

A protocol adapter (service/protocols/) translates its wire format and nothing else. For each inference request
it asks the registry for the version (`serving.registry.resolve`), then:

    with await admit(serving, version, declared_bytes=..., deadline=..., is_disconnected=...) as call:
        call.expect(images)                     # optional: a count known before the body is parsed
        pixels = await call.decode(files)       # image files → uint8 digits, through the shared decode pool
        result = await call.classify(pixels)    # .probabilities, and .digit_scores / .is_digit (or None)

`admit` refuses an overloaded server before the body is read (503 `overloaded`); the call holds the version
(a version being unloaded finishes the requests that hold it) and the request's share of the capacity until the
block ends. `classify` takes uint8 pixels 0-255 (MNIST polarity) or float32 pixels already in [0, 1], the
signature's own input, and queues them in the version's batcher, which runs the model. Nothing here knows
about HTTP, JSON or gRPC.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.admission import LARGE_BODY_BYTES, Deadline, Ticket
from service.decoding import NamedFile
from service.digit_check import Classified, classified
from service.errors import Overloaded
from service.registry import LoadedVersion
from service.serving import ServingState

DisconnectCheck = Callable[[], Awaitable[bool]]
# A refused request whose body is large is answered after this pause: its body must still be read (to keep the
# connection), and a client that resends at once (wrk does; real clients wait for Retry-After) would otherwise
# make the server read hundreds of megabytes a second of bodies it refuses, starving the work it admitted.
# Long enough to bound that reading to a fraction of a core (64 clients resending 476 KB batches: goodput 0.29x
# of 4 clients' without a pause, 0.79x with it; 0.25 s measured no better), short beside Retry-After.
REFUSAL_PAUSE_SECONDS = 0.05
PIXEL_SCALE = np.float32(1 / 255)


async def never_disconnected() -> bool:
    return False


@dataclass
class RequestStats:
    """What one inference request did, for its metrics and its access line."""

    model: str
    version: str
    images: int = 0
    not_digits: int | None = None  # images the digit check flagged (None: the version has no check)
    queue_seconds: float = 0.0
    decode_seconds: float = 0.0

    def verdicts(self) -> tuple[int, int] | None:
        """(images, of which not digits), when the version's digit check judged them."""
        return None if self.not_digits is None else (self.images, self.not_digits)


async def admit(
    serving: ServingState,
    version: LoadedVersion,
    *,
    declared_bytes: int | None,
    deadline: Deadline,
    is_disconnected: DisconnectCheck = never_disconnected,
    state: dict[str, Any] | None = None,
) -> Call:
    """An admitted inference request on `version`, to use as a context manager; Overloaded (after a short pause
    for a large body) when the server has no room for what `declared_bytes` could carry. Its stats go into
    `state` (the request's scope state) under "stats", where the middleware finds them for metrics and logs."""
    stats = RequestStats(version.model.name, str(version.model.version))
    if state is not None:
        state["stats"] = stats
    try:
        ticket = serving.admission.admit(declared_bytes)
    except Overloaded:
        if declared_bytes is None or declared_bytes > LARGE_BODY_BYTES:
            await asyncio.sleep(REFUSAL_PAUSE_SECONDS)
        raise
    return Call(serving, version, ticket, deadline, is_disconnected, stats)


class Call:
    """One admitted inference request: it holds its version and its share of the capacity until it ends."""

    __slots__ = ("deadline", "ink_kept", "is_disconnected", "serving", "stats", "ticket", "version")

    def __init__(
        self,
        serving: ServingState,
        version: LoadedVersion,
        ticket: Ticket,
        deadline: Deadline,
        is_disconnected: DisconnectCheck,
        stats: RequestStats,
    ) -> None:
        self.serving = serving
        self.stats = stats
        self.version = version
        self.ticket = ticket
        self.deadline = deadline
        self.is_disconnected = is_disconnected
        self.ink_kept: np.ndarray | None = None  # per decoded file, for the digit check

    def __enter__(self) -> Call:
        self.version.leases += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.version.leases -= 1
        self.ticket.__exit__()

    def expect(self, images: int) -> None:
        """Hold `images` from now on (a count read from the body before it is parsed); Overloaded if they do not
        fit beside the requests already at work."""
        self.ticket.hold(images)

    async def decode(self, files: list[NamedFile], *, preprocess: bool = True) -> np.ndarray:
        """Image files → (n, 28, 28) uint8 digits, normalised as MNIST was made (or only decoded, with
        `preprocess=False`), in the decode pool that every request shares."""
        self.ticket.hold(len(files))
        started = time.perf_counter()
        try:
            decoded = await self.serving.decode_pool.to_mnist(
                files, preprocess=preprocess, is_disconnected=self.is_disconnected, deadline=self.deadline
            )
            self.ink_kept = decoded.ink_kept
            return decoded.pixels
        finally:
            seconds = self.stats.decode_seconds = time.perf_counter() - started
            if self.serving.metrics is not None:
                self.serving.metrics.decoded(seconds)

    async def classify(self, pixels: np.ndarray) -> Classified:
        """(n, 28, 28) pixels, uint8 0-255 or float32 in [0, 1] → (n, 10) float32 probabilities, and whether
        each image is a digit when the version can tell."""
        self.ticket.hold(len(pixels))
        self.stats.images = len(pixels)
        answer = await self.version.batcher.classify(
            unit_pixels(pixels), self.is_disconnected, self.deadline, self.stats
        )
        ink_kept = self.ink_kept if self.ink_kept is not None and len(self.ink_kept) == len(pixels) else None
        result = classified(answer, self.version.digit_check, ink_kept)
        if result.is_digit is not None:
            self.stats.not_digits = len(pixels) - int(np.count_nonzero(result.is_digit))
        return result


def unit_pixels(pixels: np.ndarray) -> np.ndarray:
    """Pixels as the model reads them: float32 in [0, 1] (uint8 pixels are scaled by 1/255, as in training)."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) * PIXEL_SCALE
    return pixels.astype(np.float32, copy=False)
