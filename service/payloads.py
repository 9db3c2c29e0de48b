"""JSON request bodies → what the model reads: uint8 pixel arrays, or image files to normalise.

Pixel arrays are parsed straight into numpy (orjson, then one `np.asarray`), never one Python object per pixel
through pydantic. Only when that fast path finds something wrong does a slow walk run, to say exactly where.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import orjson

from service.errors import (
    BatchTooLarge,
    EmptyBatch,
    InvalidBase64,
    InvalidJSON,
    InvalidPixels,
    InvalidRequest,
    InvalidShape,
)

SIDE = 28
PIXELS = SIDE * SIDE
ROW_LENGTHS = [SIDE] * SIDE
# The smallest JSON pixel image: 784 one-digit pixels and their commas; a body of n bytes holds at most
# n / MIN_JSON_IMAGE_BYTES of them.
MIN_JSON_IMAGE_BYTES = 2 * PIXELS
PIXEL_FORMS = ("image", "images")
FILE_FORMS = ("image_b64", "images_b64")
ALL_FORMS = PIXEL_FORMS + FILE_FORMS
PIXEL_RULE = "pixels must be integers 0-255, white digit on black (MNIST polarity)"
INTEGER_ARRAY_BYTES = b"0123456789-,[] \t\r\n}"
DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w=.+-]+)*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class JsonPayload:
    """Either `pixels` (n, 28, 28) uint8, used as they are, or `files`: image files to decode and normalise."""

    pixels: np.ndarray | None = None
    files: list[bytes] | None = None
    file_names: list[str] | None = None  # where each file was in the body, for error messages


def parse_json_payload(body: bytes, *, max_images: int) -> JsonPayload:
    document = _load_json(body)
    if not isinstance(document, dict):
        raise InvalidRequest(
            f"the JSON body must be an object with one of {', '.join(ALL_FORMS)}; got {_kind(document)}"
        )
    present = [key for key in ALL_FORMS if key in document]
    unknown = sorted(set(document) - set(ALL_FORMS))
    if unknown or len(present) != 1:
        problem = f"unknown field(s) {', '.join(unknown)}" if unknown else f"{len(present)} image fields given"
        raise InvalidRequest(
            f"{problem}: send exactly one of {', '.join(ALL_FORMS)}", details={"fields": sorted(document)}
        )
    form = present[0]
    value = document[form]
    if form == "image":
        return JsonPayload(pixels=parse_pixels([value], body, location=["image"]))
    if form == "image_b64":
        return JsonPayload(files=[decode_base64(value, "image_b64")], file_names=["image_b64"])
    items = _checked_batch(value, form, max_images)
    if form == "images":
        return JsonPayload(
            pixels=parse_pixels(items, body, location=[f"images[{index}]" for index in range(len(items))])
        )
    names = [f"images_b64[{index}]" for index in range(len(items))]
    return JsonPayload(
        files=[decode_base64(item, name) for name, item in zip(names, items, strict=True)], file_names=names
    )


def parse_pixels(images: list[Any], body: bytes, *, location: list[str]) -> np.ndarray:
    """A list of 28x28 (or flat 784) integer pixel lists → (n, 28, 28) uint8, or an error naming the first fault."""
    fast = _fast_pixels(images, body)
    if fast is not None:
        return fast
    for where, image in zip(location, images, strict=True):
        _explain_image(image, where)
    # Every image is valid, but the fast path doubted the body (a duplicated key, "-0", ...): read them one by one.
    return np.stack([np.array(image, dtype=np.int64).reshape(SIDE, SIDE) for image in images]).astype(np.uint8)


def decode_base64(value: Any, where: str) -> bytes:
    """Base64 (standard or URL-safe, padding optional, data: URL prefix allowed) → the file's bytes."""
    if not isinstance(value, str):
        raise InvalidBase64(f"{where} must be a base64 string of an image file; got {_kind(value)}")
    text = DATA_URL.sub("", value.strip(), count=1)
    text = "".join(text.split())
    if not text:
        raise InvalidBase64(f"{where} is empty; expected the base64 of a PNG, JPEG, GIF, BMP or WEBP file")
    text += "=" * (-len(text) % 4)
    alphabet = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidBase64(f"{where} is not valid base64 ({error}); expected the base64 of an image file") from None


def _load_json(body: bytes) -> Any:
    if not body.strip():
        raise InvalidJSON('the request body is empty; expected a JSON object such as {"image": [[0, ...], ...]}')
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidJSON(f"the body is not valid JSON: {error}") from None


def _checked_batch(value: Any, form: str, max_images: int) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{form} must be a list of images; got {_kind(value)}")
    if not value:
        raise EmptyBatch(f"{form} is empty; send at least one image")
    if len(value) > max_images:
        raise BatchTooLarge(
            f"{form} holds {len(value)} images; the limit is {max_images} per request",
            details={"images": len(value), "limit": max_images},
        )
    return value


def _fast_pixels(images: list[Any], body: bytes) -> np.ndarray | None:
    """Well-formed input read in C loops; anything it doubts goes to the slow walk, which names the fault.

    The body's array part must hold nothing but digits, minus signs, commas, brackets and spaces: then every pixel
    is a JSON integer (no floats, strings, booleans or nulls, which numpy would quietly coerce), and
    `np.fromiter` over the flattened lists is safe and about twice as fast as `np.asarray` on nested lists.
    Each image may be nested (28 rows of 28) or flat (784), independently of the others.
    """
    start = body.find(b"[")
    if start < 0 or body[start:].translate(None, INTEGER_ARRAY_BYTES):
        return None
    try:
        pixels = _flat_pixels(images[0]) if len(images) == 1 else _batch_pixels(images)
        array = np.fromiter(pixels, dtype=np.int64, count=len(images) * PIXELS)
    except (TypeError, ValueError, OverflowError):  # a wrong shape, a number where a list should be, or vice versa
        return None
    if array.max() > 255 or (b"-" in body and array.min() < 0):
        return None
    return array.astype(np.uint8).reshape(-1, SIDE, SIDE)


def _batch_pixels(images: list[Any]) -> Iterable[Any]:
    """A batch's pixels in order: one iterator over the rows when every image is nested (the usual case), else
    image by image."""
    if all(len(image) == SIDE and list(map(len, image)) == ROW_LENGTHS for image in images):
        return chain.from_iterable(chain.from_iterable(images))
    return chain.from_iterable(map(_flat_pixels, images))


def _flat_pixels(image: Any) -> Iterable[Any]:
    """One image's pixels in order, nested or flat; TypeError for anything of another shape."""
    if len(image) == SIDE and list(map(len, image)) == ROW_LENGTHS:  # C loops: a generator cost ~8 µs per image
        return chain.from_iterable(image)
    if len(image) == PIXELS:
        return image
    raise TypeError("not an image's shape")


def _explain_image(image: Any, where: str) -> None:
    """Raise the most precise error for one image, or return if it is valid."""
    if not isinstance(image, list):
        raise InvalidShape(
            f"{where} must be a 28x28 list of pixel rows or a flat list of 784 pixels; got {_kind(image)}"
        )
    if image and all(not isinstance(row, list) for row in image):
        if len(image) != PIXELS:
            raise InvalidShape(f"{where}: expected a 28x28 image (or 784 pixels flat), got a flat list of {len(image)}")
        for index, pixel in enumerate(image):
            _check_pixel(pixel, f"{where}[{index}]")
        return
    if len(image) != SIDE or not all(isinstance(row, list) for row in image):
        raise InvalidShape(f"{where}: expected a 28x28 image, got {_describe_shape(image)}")
    widths = {len(row) for row in image}
    if widths != {SIDE}:
        bad_row = next(index for index, row in enumerate(image) if len(row) != SIDE)
        raise InvalidShape(
            f"{where}: expected a 28x28 image, got {_describe_shape(image)} "
            f"(row {bad_row} has {len(image[bad_row])} pixels)"
        )
    for row_index, row in enumerate(image):
        for column_index, pixel in enumerate(row):
            _check_pixel(pixel, f"{where}[{row_index}][{column_index}]")


def _check_pixel(pixel: Any, where: str) -> None:
    if isinstance(pixel, bool) or not isinstance(pixel, int):
        hint = "; floats in [0, 1] must be multiplied by 255 and rounded" if isinstance(pixel, float) else ""
        raise InvalidPixels(
            f"pixel {where} is {_show(pixel)}: {PIXEL_RULE}{hint}", details={"location": where, "value": _show(pixel)}
        )
    if not 0 <= pixel <= 255:
        raise InvalidPixels(
            f"pixel {where} is {pixel}, outside 0-255: {PIXEL_RULE}", details={"location": where, "value": pixel}
        )


def _describe_shape(image: list[Any]) -> str:
    rows = len(image)
    if rows == 0:
        return "an empty list"
    if not all(isinstance(row, list) for row in image):
        return f"a list of {rows} items that are not all rows"
    widths = sorted({len(row) for row in image})
    if len(widths) == 1:
        return f"{rows}x{widths[0]}"
    return f"{rows} rows of {widths[0]} to {widths[-1]} pixels"


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if _is_json_scalar(value) else _kind(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_json_scalar(value: Any) -> bool:
    return value is None or (
        isinstance(value, bool | int | float | str) and not (isinstance(value, int) and value.bit_length() > 63)
    )


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
