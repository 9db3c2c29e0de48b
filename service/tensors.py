"""Numeric tensors sent by the standard protocols → the model's pixels, checked the same way for each of them.

TF Serving's `instances` / `inputs` and the Open Inference Protocol's `data` are JSON arrays of numbers, nested or
flat; the Open Inference Protocol may also send a tensor's raw little-endian bytes. Whatever the wire, a tensor
becomes numpy here, and its pixels are checked against what the model reads: float32 in [0, 1] (the signature's
own input) or uint8 0-255 (MNIST's pixels). An error says which element is wrong and what is expected.

JSON arrays are read with one C call (`np.array`) after a byte-level guard: numpy would quietly turn `true` into
1, `"0.5"` into 0.5 and `null` into NaN, so an array whose JSON holds anything but numbers, commas and brackets is
walked element by element instead, to name the first thing that is not a number.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson

from service.errors import InvalidPixels, InvalidShape

NUMBER_BYTES = b"0123456789-+.eE,[]"
UNSIGNED_INTEGER_BYTES = b"0123456789,[]"
FLOAT_RULE = "pixels must be float32 numbers in [0, 1] (pixel / 255), white digit on black (MNIST polarity)"
UINT8_RULE = "pixels must be integers 0-255, white digit on black (MNIST polarity)"


def json_array(value: Any, *, integers: bool, where: str) -> np.ndarray:
    """A JSON array of numbers (nested to any depth, rectangular) → a float64 or int64 array of its nested shape."""
    if not isinstance(value, list):
        raise InvalidShape(f"{where} must be a list of numbers; got {kind(value)}")
    allowed = UNSIGNED_INTEGER_BYTES if integers else NUMBER_BYTES
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254 levels): no image is
        raise InvalidShape(f"{where} is nested too deeply to be a tensor of pixels") from None
    if encoded.translate(None, allowed):
        _raise_for_first_non_number(value, where, integers)
    try:
        array = np.array(value, dtype=np.int64 if integers else np.float64)
    except ValueError:
        raise InvalidShape(f"{where} is ragged: {_describe_ragged(value)}") from None
    except OverflowError:
        raise InvalidPixels(f"{where} holds an integer too large for any pixel; {UINT8_RULE}") from None
    return array


def float_pixels(array: np.ndarray, where: str) -> np.ndarray:
    """Float pixels → float32, or InvalidPixels naming the first one that is not finite or not in [0, 1]."""
    with np.errstate(over="ignore"):  # a number past float32's range becomes inf, refused just below
        pixels = array.astype(np.float32, copy=False)
    if pixels.min() >= 0 and pixels.max() <= 1:  # NaN fails these comparisons too: two reductions, no masks
        return pixels
    bad = ~np.isfinite(pixels) | (pixels < 0) | (pixels > 1)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        value = array[index]
        hint = "; scale 0-255 pixels by 1/255" if np.isfinite(value) and 1 < value <= 255 else ""
        raise InvalidPixels(
            f"{where}{_index_text(index)} is {_number_text(value)}: {FLOAT_RULE}{hint}",
            details={"location": f"{where}{_index_text(index)}", "value": _number_text(value)},
        )
    return pixels


def uint8_pixels(array: np.ndarray, where: str) -> np.ndarray:
    """Integer pixels → uint8, or InvalidPixels naming the first one outside 0-255."""
    bad = (array < 0) | (array > 255)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InvalidPixels(
            f"{where}{_index_text(index)} is {int(array[index])}, outside 0-255: {UINT8_RULE}",
            details={"location": f"{where}{_index_text(index)}", "value": int(array[index])},
        )
    return array.astype(np.uint8)


def shape_text(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


def kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _raise_for_first_non_number(value: list[Any], where: str, integers: bool) -> None:
    rule = UINT8_RULE if integers else FLOAT_RULE
    for index, element in _leaves(value):
        not_a_number = isinstance(element, bool) or not isinstance(element, int | float)
        if not_a_number or (integers and isinstance(element, float)):
            shown = orjson.dumps(element).decode()[:40] if not isinstance(element, list | dict) else kind(element)
            raise InvalidPixels(
                f"{where}{_index_text(index)} is {shown}: {rule}",
                details={"location": f"{where}{_index_text(index)}", "value": shown},
            )
        if integers and element < 0:
            raise InvalidPixels(
                f"{where}{_index_text(index)} is {element}, outside 0-255: {rule}",
                details={"location": f"{where}{_index_text(index)}", "value": element},
            )
    raise InvalidPixels(f"{where} could not be read as numbers: {rule}")  # the guard doubted a valid array


def _leaves(value: Any) -> Iterator[tuple[tuple[int, ...], Any]]:
    """Every element that is not a list, with its index, depth first (an empty list yields nothing); a stack, not
    recursion, since JSON may nest deeper than Python recurses."""
    stack: list[tuple[tuple[int, ...], Any]] = [((), value)]
    while stack:
        index, item = stack.pop()
        if isinstance(item, list):
            stack.extend(((*index, position), child) for position, child in reversed(list(enumerate(item))))
        else:
            yield index, item


def _describe_ragged(value: list[Any]) -> str:
    """Where a nested list stops being rectangular: the first list whose length differs from its siblings'."""
    level: list[tuple[tuple[int, ...], Any]] = [((), value)]
    while level:
        lengths = {len(item) if isinstance(item, list) else None for _, item in level}
        if len(lengths) > 1:
            first = level[0][1]
            for index, item in level:
                if isinstance(item, list) != isinstance(first, list) or (
                    isinstance(item, list) and len(item) != len(first)
                ):
                    return f"{_index_text(index)} is {_size_text(item)} where {_index_text(level[0][0])} is " + (
                        _size_text(first)
                    )
        level = [((*index, position), child) for index, item in level if isinstance(item, list)
                 for position, child in enumerate(item)]  # fmt: skip
    return "its nested lists do not form a rectangular array"


def _size_text(item: Any) -> str:
    return f"a list of {len(item)}" if isinstance(item, list) else kind(item)


def _index_text(index: tuple[int, ...]) -> str:
    return "".join(f"[{position}]" for position in index)


def _number_text(value: Any) -> str:
    number = float(value)
    return "NaN" if number != number else repr(number)
