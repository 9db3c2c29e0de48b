"""Bad input through a real server: a clear 4xx in the one envelope, never a 500, never a crash."""

from __future__ import annotations

import base64
import struct
import zlib

import httpx
import pytest

from service.schemas import ErrorEnvelope
from tests.drawing import as_person_would, encode


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    envelope = ErrorEnvelope.model_validate(response.json())
    assert envelope.error.code == code
    assert envelope.request_id and envelope.request_id == response.headers["x-request-id"]
    return envelope.error.message


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height: a decompression bomb's announcement."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    data = zlib.compress(b"\x00" * 64)
    idat = struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat


def test_predict_wrong_shape_says_what_was_expected(client: httpx.Client) -> None:
    message = error_of(client.post("/predict", json={"image": [[0] * 28] * 27}), 422, "invalid_shape")
    assert "expected a 28x28 image, got 27x28" in message


def test_predict_non_integer_pixel_says_where(client: httpx.Client) -> None:
    image = [[0] * 28 for _ in range(28)]
    image[3][4] = 0.5
    message = error_of(client.post("/predict", json={"image": image}), 422, "invalid_pixels")
    assert "image[3][4]" in message and "0-255" in message


def test_predict_out_of_range_pixel_says_where(client: httpx.Client) -> None:
    images = [[[0] * 28 for _ in range(28)] for _ in range(2)]
    images[1][27][0] = 256
    message = error_of(client.post("/predict", json={"images": images}), 422, "invalid_pixels")
    assert "images[1][27][0]" in message and "256" in message


def test_predict_empty_batch(client: httpx.Client) -> None:
    error_of(client.post("/predict", json={"images": []}), 422, "empty_batch")


def test_predict_oversized_batch(client: httpx.Client) -> None:
    response = client.post("/predict", json={"images": [[0] * 784] * 257})
    assert "limit is 256" in error_of(response, 422, "batch_too_large")


def test_predict_not_json(client: httpx.Client) -> None:
    response = client.post("/predict", content=b"{nope", headers={"content-type": "application/json"})
    error_of(response, 400, "invalid_json")


def test_predict_bytes_that_are_not_an_image(client: httpx.Client) -> None:
    response = client.post("/predict", content=b"hello, not a picture", headers={"content-type": "image/png"})
    assert "PNG" in error_of(response, 422, "invalid_image")


def test_predict_truncated_png(client: httpx.Client, mnist_sample: dict) -> None:
    png = encode(as_person_would(mnist_sample["x_test"][0], seed=0))
    response = client.post("/predict", content=png[: len(png) // 2], headers={"content-type": "image/png"})
    error_of(response, 422, "invalid_image")


def test_predict_bad_base64(client: httpx.Client) -> None:
    error_of(client.post("/predict", json={"image_b64": "not base64!"}), 422, "invalid_base64")


def test_predict_base64_of_garbage_is_not_an_image(client: httpx.Client) -> None:
    response = client.post("/predict", json={"images_b64": [base64.b64encode(b"garbage").decode()]})
    assert "images_b64[0]" in error_of(response, 422, "invalid_image")


def test_predict_unsupported_content_type(client: httpx.Client) -> None:
    response = client.post("/predict", content=b"1,2,3", headers={"content-type": "text/csv"})
    assert "application/json" in error_of(response, 415, "unsupported_media_type")


def test_predict_missing_content_type(client: httpx.Client) -> None:
    error_of(client.post("/predict", content=b"abc"), 415, "unsupported_media_type")


def test_predict_body_over_the_limit_is_refused_unread(client: httpx.Client) -> None:
    response = client.post("/predict", content=b"0" * (4 * 1024 * 1024 + 1), headers={"content-type": "image/png"})
    assert "limit" in error_of(response, 413, "payload_too_large")


def test_predict_chunked_body_over_the_limit(client: httpx.Client) -> None:
    def chunks():  # no Content-Length: the server must count as it reads
        for _ in range(80):
            yield b"0" * 65536

    response = client.post("/predict", content=chunks(), headers={"content-type": "image/png"})
    error_of(response, 413, "payload_too_large")


def test_predict_decompression_bomb_is_refused_before_decoding(client: httpx.Client) -> None:
    response = client.post("/predict", content=png_header_only(100_000, 100_000), headers={"content-type": "image/png"})
    assert "megapixels" in error_of(response, 413, "image_too_large")


def test_predict_multipart_without_file_field(client: httpx.Client) -> None:
    response = client.post("/predict", files={"picture": ("a.png", b"x", "image/png")})
    assert "'file'" in error_of(response, 422, "empty_batch")


def test_predict_preprocess_none_requires_28x28(client: httpx.Client, mnist_sample: dict) -> None:
    png = encode(as_person_would(mnist_sample["x_test"][0], seed=0))
    response = client.post("/predict?preprocess=none", content=png, headers={"content-type": "image/png"})
    assert "28x28" in error_of(response, 422, "invalid_shape")


def test_predict_unknown_query_value(client: httpx.Client) -> None:
    response = client.post("/predict?preprocess=sometimes", json={"image": [0] * 784})
    assert "preprocess" in error_of(response, 422, "invalid_request")


def test_unknown_path_is_404_in_the_envelope(client: httpx.Client) -> None:
    assert "/nowhere" in error_of(client.get("/nowhere"), 404, "not_found")


def test_wrong_method_is_405_in_the_envelope(client: httpx.Client) -> None:
    assert "POST" in error_of(client.get("/predict"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    "document",
    [{"image": None}, {"image": {}}, {"images": "x"}, {"images": [None]}, {"image": [[[0]]]},
     {"image": [0] * 784, "extra": 1}, [], 3, {"images_b64": [1, 2]}, {"image": [[1e400] * 28] * 28}],
)  # fmt: skip
def test_predict_hostile_json_gets_a_4xx(client: httpx.Client, document: object) -> None:
    response = client.post("/predict", json=document) if document != {"image": [[1e400] * 28] * 28} else None
    if response is None:
        response = client.post("/predict", content=b'{"image": 1e400}', headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    ErrorEnvelope.model_validate(response.json())
