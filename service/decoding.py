"""Decoding image files off the event loop, so that no single request can hold up everyone else's uploads.

Decoding and normalising run on `threads` dedicated threads (one by default: more only pass the GIL back and
forth), and the work a request may bring is bounded three ways before a pixel is decoded:

- per image: `max_image_pixels`, from the file's header (as before), and `max_decode_bytes`, the memory its
  decoding will take at its peak, estimated from its format and mode (a 2 KB lossless WebP of 40 megapixels
  takes 640 MB to decode: more than a replica's whole margin);
- per request: `max_request_pixels`, the sum of what its headers say will be decoded (a JPEG that decodes at a
  reduced scale counts at that scale), 413 `image_too_large` above it;
- per process: `backlog_pixels`, the decoding work admitted and not yet done, all requests together; a request
  that would pass it is refused at once with 503 `overloaded` and `Retry-After`, instead of queueing.

Within those bounds requests take turns: a request's files are decoded in slices of at most SLICE_PIXELS,
each slice a separate trip to a decoding thread, and waiting trips are served first come, first served. An image
larger than a slice (a photo, or a bomb) goes alone to a thread of its own, the large-image lane, so the uploads
of everyone else never wait behind it (Pillow's decoders release the GIL, so the two lanes run side by side).
Between slices the request is dropped if its client has gone or its deadline has passed. A request that fits in
one slice, nearly every upload, is decoded in the same trip that reads its headers (a second trip cost a 140 px
PNG upload 10% more CPU). Running out of memory is logged and answered 503 `insufficient_memory`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import numpy as np
from PIL import Image

from service.admission import Deadline
from service.errors import ClientGone, ImageTooLarge, InsufficientMemory, Overloaded, ServiceError
from service.images import Normalised, decode_memory_estimate, open_file, opened_to_mnist

logger = logging.getLogger("service.decoding")

# At most this many decoded pixels per trip to the decoding thread: ~10-40 ms of work. Small uploads travel
# together (a request of 256 140x140 PNGs makes two trips), large ones alone.
SLICE_PIXELS = 4_000_000

DisconnectCheck = Callable[[], Awaitable[bool]]
Result = TypeVar("Result")


@dataclass(frozen=True)
class NamedFile:
    content: bytes
    name: str  # where it was in the request, for error messages ("body", "file #2 (a.png)", "images_b64[3]")


@dataclass(frozen=True)
class Decoded:
    """A request's files as digits: (n, 28, 28) uint8, and the share of each one's drawn ink kept (n,)."""

    pixels: np.ndarray
    ink_kept: np.ndarray

    @staticmethod
    def of(normalised: list[Normalised]) -> Decoded:
        return Decoded(np.stack([item.digit for item in normalised]), np.array([item.ink_kept for item in normalised]))


@dataclass(frozen=True)
class _Opened:
    image: Image.Image
    name: str

    @property
    def cost(self) -> int:
        width, height = self.image.size
        return width * height


class DecodePool:
    """The decoding threads of one server, the limits above, and the backlog of decoding work they admit."""

    def __init__(
        self,
        *,
        threads: int,
        max_image_pixels: int,
        max_request_pixels: int,
        backlog_pixels: int,
        max_decode_bytes: int,
    ) -> None:
        self._limiter = anyio.CapacityLimiter(threads)
        self._large_image_limiter = anyio.CapacityLimiter(1)
        self.max_image_pixels = max_image_pixels
        self.max_decode_bytes = max_decode_bytes
        self.max_request_pixels = max_request_pixels
        self.backlog_pixels = backlog_pixels
        self.backlog = 0  # decoded pixels admitted and not yet done, all requests together
        self._backlog_lock = threading.Lock()  # the decoding threads reserve, the event loop releases
        self.abandoned = 0  # requests dropped between slices because their client had gone

    async def to_mnist(
        self,
        files: list[NamedFile],
        *,
        preprocess: bool,
        is_disconnected: DisconnectCheck,
        deadline: Deadline,
    ) -> Decoded:
        """The files as (n, 28, 28) uint8 digits (with the share of each one's ink kept), or the ServiceError of the
        first file that cannot be read."""
        opened, digits = await self._in_thread(self._open_and_decode_if_small, files, preprocess)
        if digits is not None:
            return Decoded.of(digits)
        cost = sum(item.cost for item in opened)
        try:
            decoded: list[Normalised] = []
            for work in _slices(opened):
                if await is_disconnected():
                    self.abandoned += 1
                    raise ClientGone(f"decoding stopped after {len(decoded)} of {len(opened)} images")
                deadline.check()
                lane = self._large_image_limiter if work[0].cost > SLICE_PIXELS else self._limiter
                decoded.extend(await self._in_thread(self._normalise_all, work, preprocess, limiter=lane))
        finally:
            self._release(cost)
        return Decoded.of(decoded)

    def _open_and_decode_if_small(
        self, files: list[NamedFile], preprocess: bool
    ) -> tuple[list[_Opened], list[Normalised] | None]:
        """The first trip to a decoding thread: read the headers and reserve their cost in the backlog; a request
        within one slice (nearly every upload) is decoded in this same trip, and its reservation given back."""
        opened = self._open_all(files, preprocess)
        cost = sum(item.cost for item in opened)
        self._check_request_budget(opened, cost)
        self._reserve(cost)
        if cost > SLICE_PIXELS:
            return opened, None  # the caller decodes it in slices, and releases the reservation
        try:
            return opened, self._normalise_all(opened, preprocess)
        finally:
            self._release(cost)

    def _reserve(self, cost: int) -> None:
        with self._backlog_lock:
            if self.backlog > 0 and self.backlog + cost > self.backlog_pixels:
                raise Overloaded(
                    f"the server is busy decoding images ({self.backlog / 1e6:.0f} megapixels waiting, the limit is "
                    f"{self.backlog_pixels / 1e6:.0f}); retry shortly"
                )
            self.backlog += cost

    def _release(self, cost: int) -> None:
        with self._backlog_lock:
            self.backlog -= cost

    def _check_request_budget(self, opened: list[_Opened], cost: int) -> None:
        if cost <= self.max_request_pixels:
            return
        raise ImageTooLarge(
            f"the request's {len(opened)} images would decode to {cost / 1e6:.1f} megapixels in all; the limit "
            f"per request is {self.max_request_pixels / 1e6:.1f} megapixels (send fewer or smaller images per "
            "request)",
            details={"pixels": cost, "limit": self.max_request_pixels},
        )

    async def _in_thread(
        self, function: Callable[..., Result], *arguments: object, limiter: anyio.CapacityLimiter | None = None
    ) -> Result:
        return await anyio.to_thread.run_sync(
            _server_side_memory_errors, function, *arguments, limiter=limiter or self._limiter
        )

    def _open_all(self, files: list[NamedFile], preprocess: bool) -> list[_Opened]:
        return [_Opened(_named(file.name, self._open, file.content, preprocess), file.name) for file in files]

    def _open(self, content: bytes, preprocess: bool) -> Image.Image:
        image = open_file(content, max_pixels=self.max_image_pixels, preprocess=preprocess)
        needed = decode_memory_estimate(image)
        if needed > self.max_decode_bytes:
            width, height = image.size
            raise ImageTooLarge(
                f"the {image.format} image of {width}x{height} would take about {needed / 2**20:,.0f} MiB of memory "
                f"to decode; the limit is {self.max_decode_bytes / 2**20:,.0f} MiB (send a smaller image, or PNG or "
                "JPEG rather than WebP)",
                details={"bytes": needed, "limit": self.max_decode_bytes},
            )
        return image

    def _normalise_all(self, work: list[_Opened], preprocess: bool) -> list[Normalised]:
        return [
            _named(item.name, opened_to_mnist, item.image, max_pixels=self.max_image_pixels, preprocess=preprocess)
            for item in work
        ]


def _slices(opened: list[_Opened]) -> list[list[_Opened]]:
    """Consecutive files grouped while their decoding cost stays within SLICE_PIXELS."""
    slices: list[list[_Opened]] = []
    pixels = 0
    for item in opened:
        if not slices or pixels + item.cost > SLICE_PIXELS:
            slices.append([])
            pixels = 0
        slices[-1].append(item)
        pixels += item.cost
    return slices


def _named(name: str, function: Callable[..., Result], *arguments: object, **keywords: object) -> Result:
    """Call `function`; an error it raises names the file it came from (a raw body needs no name)."""
    try:
        return function(*arguments, **keywords)
    except ServiceError as error:
        if name != "body":
            error.message = f"{name}: {error.message}"
        raise


def _server_side_memory_errors(function: Callable[..., Result], *arguments: object) -> Result:
    try:
        return function(*arguments)
    except MemoryError:
        logger.error("ran out of memory while decoding images", exc_info=True)
        raise InsufficientMemory(
            "the server ran out of memory while decoding the images; retry shortly, or send smaller images"
        ) from None
