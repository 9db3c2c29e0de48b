"""JSON bodies → pixel arrays: the fast path, and the precise errors of the slow one."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from service.errors import (
    BatchTooLarge,
    EmptyBatch,
    InvalidBase64,
    InvalidJSON,
    InvalidPixels,
    InvalidRequest,
    InvalidShape,
)
from service.payloads import decode_base64, parse_json_payload


def body(document: object) -> bytes:
    return orjson.dumps(document)


def digit(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(28, 28), dtype=np.uint8)


def test_parse_json_payload_reads_one_nested_image_exactly() -> None:
    image = digit()
    payload = parse_json_payload(body({"image": image.tolist()}), max_images=4)
    assert payload.pixels is not None and payload.pixels.dtype == np.uint8
    np.testing.assert_array_equal(payload.pixels, image[np.newaxis])


def test_parse_json_payload_reads_flat_images_in_order() -> None:
    images = [digit(seed) for seed in range(3)]
    payload = parse_json_payload(body({"images": [image.reshape(-1).tolist() for image in images]}), max_images=4)
    assert payload.pixels is not None
    np.testing.assert_array_equal(payload.pixels, np.stack(images))


@pytest.mark.parametrize(
    ("rows", "columns", "expected"),
    [(27, 28, "got 27x28"), (28, 27, "got 28x27"), (29, 28, "got 29x28")],
)
def test_parse_json_payload_names_the_wrong_shape(rows: int, columns: int, expected: str) -> None:
    image = [[0] * columns for _ in range(rows)]
    with pytest.raises(InvalidShape, match=f"expected a 28x28 image, {expected}"):
        parse_json_payload(body({"image": image}), max_images=4)


def test_parse_json_payload_names_a_ragged_row() -> None:
    image = digit().tolist()
    image[5] = image[5][:20]
    with pytest.raises(InvalidShape, match="row 5 has 20 pixels"):
        parse_json_payload(body({"image": image}), max_images=4)


def test_parse_json_payload_names_a_short_flat_list() -> None:
    with pytest.raises(InvalidShape, match="flat list of 780"):
        parse_json_payload(body({"image": [0] * 780}), max_images=4)


@pytest.mark.parametrize(
    ("value", "message"),
    [(0.5, "is 0.5"), (300, "is 300, outside 0-255"), (-1, "is -1, outside 0-255"), ("7", 'is "7"'),
     (True, "is true"), (None, "is null"), (12.0, "is 12.0")],
)  # fmt: skip
def test_parse_json_payload_says_where_a_bad_pixel_is(value: object, message: str) -> None:
    images = [digit(1).tolist(), digit(2).tolist()]
    images[1][3][4] = value
    with pytest.raises(InvalidPixels) as raised:
        parse_json_payload(body({"images": images}), max_images=4)
    assert "images[1][3][4]" in raised.value.message and message in raised.value.message
    assert raised.value.details["location"] == "images[1][3][4]"


def test_parse_json_payload_rejects_huge_integers() -> None:
    raw = body({"image": [[0] * 28] * 28}).replace(b"[0,", b"[99999999999999999999,", 1)
    with pytest.raises((InvalidPixels, InvalidJSON)):
        parse_json_payload(raw, max_images=4)


def test_parse_json_payload_limits_the_batch() -> None:
    with pytest.raises(EmptyBatch):
        parse_json_payload(body({"images": []}), max_images=4)
    with pytest.raises(BatchTooLarge, match="5 images; the limit is 4"):
        parse_json_payload(body({"images": [digit().tolist()] * 5}), max_images=4)


@pytest.mark.parametrize(
    ("raw", "error"),
    [(b"", InvalidJSON), (b"{", InvalidJSON), (b"[1, 2]", InvalidRequest), (b'{"img": []}', InvalidRequest),
     (b'{"image": [], "images": []}', InvalidRequest), (b'{"image": "abc"}', InvalidShape),
     (b'{"images": {"a": 1}}', InvalidRequest), (b'"text"', InvalidRequest)],
)  # fmt: skip
def test_parse_json_payload_rejects_malformed_documents(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_json_payload(raw, max_images=4)


def test_parse_json_payload_unknown_field_lists_the_accepted_ones() -> None:
    with pytest.raises(InvalidRequest, match="image, images, image_b64, images_b64"):
        parse_json_payload(b'{"pixels": []}', max_images=4)


def test_decode_base64_accepts_what_clients_send() -> None:
    data = bytes(range(256)) * 3
    standard = base64.b64encode(data).decode()
    assert decode_base64(standard, "x") == data
    assert decode_base64(standard.rstrip("="), "x") == data
    assert decode_base64("data:image/png;base64," + standard, "x") == data
    assert decode_base64(base64.urlsafe_b64encode(data).decode(), "x") == data
    wrapped = "\n".join(standard[i : i + 76] for i in range(0, len(standard), 76))
    assert decode_base64(wrapped, "x") == data


@pytest.mark.parametrize("value", ["***", "", 42, None, "abc$"])
def test_decode_base64_rejects_non_base64(value: object) -> None:
    with pytest.raises(InvalidBase64, match="images_b64\\[3\\]"):
        decode_base64(value, "images_b64[3]")


def test_parse_json_payload_collects_base64_files_with_their_names() -> None:
    payload = parse_json_payload(body({"images_b64": ["aGVsbG8=", "d29ybGQ"]}), max_images=4)
    assert payload.files == [b"hello", b"world"]
    assert payload.file_names == ["images_b64[0]", "images_b64[1]"]


def test_parse_json_payload_rejects_exponent_notation_floats() -> None:
    raw = body({"image": [[0] * 28] * 28}).replace(b"[0,", b"[2e1,", 1)
    with pytest.raises(InvalidPixels, match=r"image\[0\]\[0\] is 20.0"):
        parse_json_payload(raw, max_images=4)


def test_parse_json_payload_reads_a_full_batch_of_256_quickly_and_exactly() -> None:
    images = np.random.default_rng(7).integers(0, 256, size=(256, 28, 28), dtype=np.uint8)
    payload = parse_json_payload(body({"images": images.tolist()}), max_images=256)
    assert payload.pixels is not None
    np.testing.assert_array_equal(payload.pixels, images)


def test_parse_json_payload_reads_nested_and_flat_images_in_one_batch() -> None:
    images = [digit(1), digit(2)]
    document = {"images": [images[0].tolist(), images[1].reshape(-1).tolist()]}
    payload = parse_json_payload(body(document), max_images=4)
    assert payload.pixels is not None
    np.testing.assert_array_equal(payload.pixels, np.stack(images))


def test_parse_json_payload_reads_minus_zero_as_zero() -> None:
    text = b'{"image": [-0' + b", 0" * 782 + b", 255]}"
    payload = parse_json_payload(text, max_images=4)
    assert payload.pixels is not None and payload.pixels[0, 0, 0] == 0 and payload.pixels[0, 27, 27] == 255


def test_parse_json_payload_takes_the_last_of_a_duplicated_key() -> None:
    """As JSON parsers (and orjson) do: the later value wins."""
    image = digit(3)
    text = b'{"image": ' + body([[0] * 28] * 28) + b', "image": ' + body(image.tolist()) + b"}"
    payload = parse_json_payload(text, max_images=4)
    assert payload.pixels is not None
    np.testing.assert_array_equal(payload.pixels[0], image)


@pytest.mark.parametrize("document", [{"image": []}, {"images": [[]]}, {"images": [[[]]]}])
def test_parse_json_payload_names_an_empty_image(document: object) -> None:
    with pytest.raises(InvalidShape, match="expected a 28x28 image"):
        parse_json_payload(body(document), max_images=4)


def test_parse_json_payload_refuses_a_negative_pixel_by_name() -> None:
    image = [[0] * 28 for _ in range(28)]
    image[2][3] = -1
    with pytest.raises(InvalidPixels, match=r"image\[2\]\[3\] is -1"):
        parse_json_payload(body({"image": image}), max_images=4)
