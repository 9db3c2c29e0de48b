"""An HTTP request → the batch of uint8 28x28 images it carries, whatever form the client chose.

- application/json: pixel arrays (used as they are) or base64 image files;
- multipart/form-data: one or more files in fields named `file`;
- a raw image body: image/png, image/jpeg, image/gif, image/bmp or image/webp.
Image files go through the call's decoding (service/core.py → the shared decode pool, which bounds and schedules
it); small JSON pixel bodies are parsed on the event loop (tens of microseconds), large ones in a worker thread.
"""

from __future__ import annotations

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.core import Call
from service.decoding import NamedFile
from service.errors import BatchTooLarge, EmptyBatch, InvalidRequest, UnsupportedMediaType
from service.payloads import MIN_JSON_IMAGE_BYTES, parse_json_payload

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp")
JSON_TYPES = ("application/json",)
ACCEPTED_TYPES = (*JSON_TYPES, "multipart/form-data", *IMAGE_TYPES)
INLINE_JSON_BYTES = 64 * 1024
FILE_FIELD = "file"
# Where the key of a JSON body is looked for; a body that hides it further in is counted as pixels, and its real
# count is held once it is parsed.
JSON_HEAD_BYTES = 256


async def read_images(request: Request, call: Call, *, max_images: int, preprocess: bool) -> np.ndarray:
    """The request's images as (n, 28, 28) uint8, or a ServiceError saying what is wrong with the request."""
    media_type = _media_type(request)
    if media_type in JSON_TYPES or media_type.endswith("+json"):
        return await _from_json(request, call, max_images, preprocess)
    if media_type == "multipart/form-data":
        return await _from_multipart(request, call, max_images, preprocess)
    if media_type in IMAGE_TYPES or media_type in ("image/jpg", "image/x-png", "image/x-ms-bmp"):
        return await call.decode([NamedFile(await request.body(), "body")], preprocess=preprocess)
    shown = media_type or "no Content-Type"
    raise UnsupportedMediaType(
        f"cannot read {shown}; send one of: {', '.join(ACCEPTED_TYPES)}",
        details={"accepted": list(ACCEPTED_TYPES)},
    )


def images_in_body(body: bytes, content_type: str, max_images: int) -> int:
    """How many images a body carries, judged from its bytes without parsing it (an upper bound for pixel arrays),
    so that admission can refuse before the expensive part: a raw image is one, a form counts its `file` fields,
    JSON files count their strings, JSON pixels are at most one per MIN_JSON_IMAGE_BYTES."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type.startswith("image/"):
        count = 1
    elif media_type == "multipart/form-data":
        count = body.count(b'name="file"')
    elif b'_b64"' in body[:JSON_HEAD_BYTES]:  # the one key of a valid body comes first; a search of 100 KB does not
        count = body.count(b'"') // 2 - 1
    else:
        count = -(-len(body) // MIN_JSON_IMAGE_BYTES)
    return max(1, min(max_images, count))


async def _from_json(request: Request, call: Call, max_images: int, preprocess: bool) -> np.ndarray:
    body = await request.body()
    if len(body) <= INLINE_JSON_BYTES:
        payload = parse_json_payload(body, max_images=max_images)
    else:
        payload = await run_in_threadpool(parse_json_payload, body, max_images=max_images)
    if payload.pixels is not None:
        return payload.pixels
    assert payload.files is not None and payload.file_names is not None
    files = [NamedFile(content, name) for content, name in zip(payload.files, payload.file_names, strict=True)]
    return await call.decode(files, preprocess=preprocess)


async def _from_multipart(request: Request, call: Call, limit: int, preprocess: bool) -> np.ndarray:
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
        files: list[NamedFile] = []
        for index, upload in enumerate(uploads):
            if not isinstance(upload, UploadFile):
                raise InvalidRequest(f"field {FILE_FIELD!r} #{index} is text, not a file; attach the image as a file")
            name = f"file #{index} ({upload.filename})" if upload.filename else f"file #{index}"
            files.append(NamedFile(await upload.read(), name))
    return await call.decode(files, preprocess=preprocess)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
