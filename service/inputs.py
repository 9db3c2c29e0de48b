"""An HTTP request → the batch of uint8 28x28 images it carries, whatever form the client chose.

- application/json: pixel arrays (used as they are) or base64 image files;
- multipart/form-data: one or more files in fields named `file`;
- a raw image body: image/png, image/jpeg, image/gif, image/bmp or image/webp.
Image files are decoded and normalised in a worker thread, all of a request's files in one hop; small JSON pixel
bodies are parsed on the event loop (tens of microseconds), large ones in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.config import Settings
from service.errors import BatchTooLarge, EmptyBatch, InvalidRequest, ServiceError, UnsupportedMediaType
from service.images import file_to_mnist
from service.payloads import parse_json_payload

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp")
JSON_TYPES = ("application/json",)
ACCEPTED_TYPES = (*JSON_TYPES, "multipart/form-data", *IMAGE_TYPES)
INLINE_JSON_BYTES = 64 * 1024
FILE_FIELD = "file"


@dataclass(frozen=True)
class Reading:
    """How to read a request's images: the limits, whether to normalise files, and the decoding threads.

    Decoding is CPU-bound and holds the GIL much of the time, so more decoding threads than the one the settings
    give (`decode_threads`) only pass the GIL back and forth: with anyio's default 40 threads a PNG upload cost
    6 ms of CPU under 64 concurrent clients against 2.5 ms alone; with one thread, 2.5 ms (measured with bench).
    """

    settings: Settings
    preprocess: bool
    decode_limiter: anyio.CapacityLimiter


async def read_images(request: Request, reading: Reading) -> np.ndarray:
    """The request's images as (n, 28, 28) uint8, or a ServiceError saying what is wrong with the request."""
    media_type = _media_type(request)
    if media_type in JSON_TYPES or media_type.endswith("+json"):
        return await _from_json(request, reading)
    if media_type == "multipart/form-data":
        return await _from_multipart(request, reading)
    if media_type in IMAGE_TYPES or media_type in ("image/jpg", "image/x-png", "image/x-ms-bmp"):
        body = await request.body()
        return await _decode_off_loop([body], ["body"], reading)
    shown = media_type or "no Content-Type"
    raise UnsupportedMediaType(
        f"cannot read {shown}; send one of: {', '.join(ACCEPTED_TYPES)}",
        details={"accepted": list(ACCEPTED_TYPES)},
    )


async def _from_json(request: Request, reading: Reading) -> np.ndarray:
    body = await request.body()
    limit = reading.settings.max_images_per_request
    if len(body) <= INLINE_JSON_BYTES:
        payload = parse_json_payload(body, max_images=limit)
    else:
        payload = await run_in_threadpool(parse_json_payload, body, max_images=limit)
    if payload.pixels is not None:
        return payload.pixels
    assert payload.files is not None and payload.file_names is not None
    return await _decode_off_loop(payload.files, payload.file_names, reading)


async def _from_multipart(request: Request, reading: Reading) -> np.ndarray:
    limit = reading.settings.max_images_per_request
    async with request.form(max_files=limit + 1, max_fields=limit + 16) as form:
        uploads = form.getlist(FILE_FIELD)
        if not uploads:
            fields = sorted(set(form.keys()))
            raise EmptyBatch(
                f"no files in the multipart field {FILE_FIELD!r} (fields sent: {fields or 'none'}); "
                f"attach each image as a file named {FILE_FIELD!r}"
            )
        if len(uploads) > limit:
            raise BatchTooLarge(f"{len(uploads)} files sent; the limit is {limit} per request")
        contents: list[bytes] = []
        names: list[str] = []
        for index, upload in enumerate(uploads):
            if not isinstance(upload, UploadFile):
                raise InvalidRequest(f"field {FILE_FIELD!r} #{index} is text, not a file; attach the image as a file")
            contents.append(await upload.read())
            names.append(f"file #{index} ({upload.filename})" if upload.filename else f"file #{index}")
    return await _decode_off_loop(contents, names, reading)


async def _decode_off_loop(contents: list[bytes], names: list[str], reading: Reading) -> np.ndarray:
    return await anyio.to_thread.run_sync(
        _files_to_mnist, contents, names, reading.settings, reading.preprocess, limiter=reading.decode_limiter
    )


def _files_to_mnist(contents: list[bytes], names: list[str], settings: Settings, preprocess: bool) -> np.ndarray:
    """Decode and normalise every file; an error names the file it came from."""
    images = []
    for content, name in zip(contents, names, strict=True):
        try:
            images.append(file_to_mnist(content, max_pixels=settings.max_image_pixels, preprocess=preprocess))
        except ServiceError as error:
            if name != "body":
                error.message = f"{name}: {error.message}"
            raise
    return np.stack(images)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
