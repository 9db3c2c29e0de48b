"""An HTTP request → the batch of uint8 28x28 images it carries, whatever form the client chose.

- application/json: pixel arrays (used as they are) or base64 image files;
- multipart/form-data: one or more files in fields named `file`;
- a raw image body: image/png, image/jpeg, image/gif, image/bmp or image/webp.
Image files are decoded and normalised in a worker thread, all of a request's files in one hop; small JSON pixel
bodies are parsed on the event loop (tens of microseconds), large ones in a worker thread.
"""

from __future__ import annotations

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


async def read_images(request: Request, settings: Settings, *, preprocess: bool) -> np.ndarray:
    """The request's images as (n, 28, 28) uint8, or a ServiceError saying what is wrong with the request."""
    media_type = _media_type(request)
    if media_type in JSON_TYPES or media_type.endswith("+json"):
        return await _from_json(request, settings, preprocess=preprocess)
    if media_type == "multipart/form-data":
        return await _from_multipart(request, settings, preprocess=preprocess)
    if media_type in IMAGE_TYPES or media_type in ("image/jpg", "image/x-png", "image/x-ms-bmp"):
        body = await request.body()
        return await run_in_threadpool(_files_to_mnist, [body], ["body"], settings, preprocess)
    shown = media_type or "no Content-Type"
    raise UnsupportedMediaType(
        f"cannot read {shown}; send one of: {', '.join(ACCEPTED_TYPES)}",
        details={"accepted": list(ACCEPTED_TYPES)},
    )


async def _from_json(request: Request, settings: Settings, *, preprocess: bool) -> np.ndarray:
    body = await request.body()
    limit = settings.max_images_per_request
    if len(body) <= INLINE_JSON_BYTES:
        payload = parse_json_payload(body, max_images=limit)
    else:
        payload = await run_in_threadpool(parse_json_payload, body, max_images=limit)
    if payload.pixels is not None:
        return payload.pixels
    assert payload.files is not None and payload.file_names is not None
    return await run_in_threadpool(_files_to_mnist, payload.files, payload.file_names, settings, preprocess)


async def _from_multipart(request: Request, settings: Settings, *, preprocess: bool) -> np.ndarray:
    limit = settings.max_images_per_request
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
    return await run_in_threadpool(_files_to_mnist, contents, names, settings, preprocess)


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
