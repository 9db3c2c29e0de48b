"""A corpus of hostile and malformed requests: each gets a clear 4xx in the envelope, and the server lives on."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from service.schemas import ErrorEnvelope


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def gif_with_many_frames(frames: int) -> bytes:
    images = [Image.new("L", (64, 64), 255 if i % 2 else 0) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


def bmp_header_claiming(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 16, 0, 0, 14 + len(info)) + info + b"\x00" * 16


def lossless_webp(width: int, height: int, *, ink: bool = False) -> bytes:
    """A lossless WebP of a white sheet (with a few black strokes when `ink`): kilobytes that decode to megapixels."""
    image = Image.new("L", (width, height), 255)
    if ink:
        for top in range(0, height, max(1, height // 40)):
            image.paste(0, (width // 2, top, width // 2 + max(2, width // 1600), top + max(1, height // 80)))
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", lossless=True, quality=0, method=0)
    return buffer.getvalue()


def stripes(width: int = 280, *, checkerboard: bool = False) -> bytes:
    rows, columns = np.indices((width, width))
    pattern = (rows + columns) % 2 if checkerboard else columns % 2
    return png_bytes(Image.fromarray((pattern * 255).astype(np.uint8)))


def deeply_nested(depth: int) -> bytes:
    return b'{"image": ' + b"[" * depth + b"]" * depth + b"}"


def raw(content: bytes, content_type: str) -> dict[str, object]:
    return {"content": content, "headers": {"content-type": content_type}}


JSON, PNG = "application/json", "image/png"
HOSTILE: dict[str, dict[str, object]] = {
    "utf16 json": raw('{"image": [0]}'.encode("utf-16"), JSON),
    "deep nesting": raw(deeply_nested(5000), JSON),
    "json null": raw(b"null", JSON),
    "json with NaN": raw(b'{"image": [NaN]}', JSON),
    "json huge exponent": raw(b'{"image": [1e999999]}', JSON),
    "json giant integer": raw(b'{"image": [' + b"9" * 5000 + b"]}", JSON),
    "json duplicate keys": raw(b'{"image": [0], "image": "x"}', JSON),
    "empty png body": raw(b"", PNG),
    "png signature only": raw(b"\x89PNG\r\n\x1a\n", PNG),
    "png with bad crc": raw(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\x01" * 17, PNG),
    "bmp claiming huge size": raw(bmp_header_claiming(60_000, 60_000), "image/bmp"),
    "bmp with zero width": raw(bmp_header_claiming(0, 10), "image/bmp"),
    "jpeg header only": raw(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
    "blank white png": raw(png_bytes(Image.new("L", (100, 100), 255)), PNG),
    "fully transparent png": raw(png_bytes(Image.new("RGBA", (64, 64), (0, 0, 0, 0))), PNG),
    "svg as png": raw(b"<svg xmlns='http://www.w3.org/2000/svg'/>", PNG),
    "multipart without boundary": raw(b"--x\r\n", "multipart/form-data"),
    "multipart garbage": raw(b"not multipart at all", "multipart/form-data; boundary=abc"),
    "multipart text field named file": {"data": {"file": "hello"}, "files": {"other": ("a", b"x")}},
    "multipart too many files": {"files": [("file", (f"{i}.png", b"x", "image/png")) for i in range(300)]},
    "form urlencoded": {"data": {"image": "1,2,3"}},
    "xml": raw(b"<image/>", "application/xml"),
    "content type with junk params": raw(b"{}", 'application/json; charset=utf-8; x="\\'),
    "empty image list": raw(b'{"image": []}', JSON),
    "batch of one empty image": raw(b'{"images": [[]]}', JSON),
    "batch of empty rows": raw(b'{"images": [[[], []]]}', JSON),
    "pixel -1": raw(b'{"image": [-1' + b", 0" * 783 + b"]}", JSON),
    "bad request timeout header": {"json": {"image": [0] * 784}, "headers": {"x-request-timeout-ms": "soon"}},
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_request_gets_a_clear_4xx(client: httpx.Client, name: str) -> None:
    response = client.post("/predict", **HOSTILE[name])  # type: ignore[arg-type]
    assert 400 <= response.status_code < 500, f"{name}: {response.status_code} {response.text[:300]}"
    envelope = ErrorEnvelope.model_validate(response.json())
    assert len(envelope.error.message) > 10
    assert client.get("/health/live").status_code == 200


def test_hostile_gif_with_many_frames_uses_the_first(client: httpx.Client) -> None:
    response = client.post("/predict", content=gif_with_many_frames(300), headers={"content-type": "image/gif"})
    assert response.status_code in (200, 422), response.text  # the first frame is blank black: 422 blank_image
    if response.status_code == 422:
        assert response.json()["error"]["code"] == "blank_image"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_hostile_methods_are_405_in_the_envelope(client: httpx.Client, method: str) -> None:
    response = client.request(method, "/predict")
    assert response.status_code == 405
    ErrorEnvelope.model_validate(response.json())


def test_hostile_request_id_header_is_not_echoed_when_unsafe(client: httpx.Client) -> None:
    response = client.get("/health", headers={"X-Request-ID": "x" * 500})
    assert response.status_code == 200
    assert response.headers["x-request-id"] != "x" * 500 and len(response.headers["x-request-id"]) == 32


def test_hostile_png_bomb_in_multipart_and_base64(client: httpx.Client) -> None:
    header = struct.pack(">IIBBBBB", 90_000, 90_000, 8, 0, 0, 0, 0)
    ihdr = struct.pack(">I", 13) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    data = zlib.compress(b"\x00" * 90_001 * 4)  # a few rows: a real bomb would inflate to 8 GB
    idat = struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))
    bomb = b"\x89PNG\r\n\x1a\n" + ihdr + idat
    for response in (
        client.post("/predict", files={"file": ("bomb.png", bomb, "image/png")}),
        client.post("/predict", json={"images_b64": [base64.b64encode(bomb).decode()]}),
    ):
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "image_too_large"


@pytest.mark.parametrize("checkerboard", [False, True], ids=["one-pixel stripes", "checkerboard"])
def test_hostile_valid_patterns_get_a_prediction_or_blank_image(client: httpx.Client, checkerboard: bool) -> None:
    response = client.post("/predict", content=stripes(checkerboard=checkerboard), headers={"content-type": PNG})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["error"]["code"] == "blank_image"


def test_hostile_many_small_bombs_in_one_request_are_refused_before_decoding(client: httpx.Client) -> None:
    """32 PNGs of 40 megapixels each: 1.4 MB that would decode to 1.3 gigapixels (~10 s of CPU)."""
    sheet = Image.new("L", (16383, 2441), 255)
    sheet.paste(0, (8000, 0, 8010, 2441))
    bomb = base64.b64encode(png_bytes(sheet)).decode()
    response = client.post("/predict", json={"images_b64": [bomb] * 32})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "image_too_large"
    assert "per request" in response.json()["error"]["message"]


def test_hostile_a_webp_that_would_take_too_much_memory_is_refused_before_decoding(client: httpx.Client) -> None:
    """2 KB of lossless WebP that decodes to 40 megapixels takes ~640 MB on the way: more than a replica can spare."""
    response = client.post(
        "/predict", content=lossless_webp(16383, 2441, ink=True), headers={"content-type": "image/webp"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "image_too_large"
    assert "MiB of memory" in response.json()["error"]["message"]


def test_hostile_trailing_slash_is_not_redirected(client: httpx.Client) -> None:
    response = client.post("/predict/", json={"image": [0] * 784}, headers={"host": "evil.example"})
    assert response.status_code == 404, response.text
    assert "location" not in response.headers
    ErrorEnvelope.model_validate(response.json())


def test_hostile_huge_header_is_431(client: httpx.Client) -> None:
    response = client.get("/health/live", headers={"x-padding": "a" * 100_000})
    assert response.status_code == 431, response.text
    assert ErrorEnvelope.model_validate(response.json()).error.code == "header_fields_too_large"


def test_hostile_huge_url_is_414(client: httpx.Client) -> None:
    response = client.get("/health/live?" + "a" * 40_000)
    assert response.status_code == 414, response.text
    assert ErrorEnvelope.model_validate(response.json()).error.code == "uri_too_long"


SEVEN_JSON = {"image": [[0] * 28 for _ in range(28)]}
HOSTILE_SELECTIONS = {
    "a 10,000-character model name": ("/models/" + "m" * 10_000 + "/predict", {}, 404, "model_not_found"),
    "a dotted model name": ("/models/%2E%2E/predict", {}, 404, "model_not_found"),
    "a model name with a NUL": ("/predict", {"model": "mnist\x00convnet"}, 404, "model_not_found"),
    "a version of 25 digits": ("/models/mnist_convnet/versions/" + "9" * 25 + "/predict", {}, 422, "invalid_request"),
    "a negative version": ("/predict", {"version": "-1"}, 422, "invalid_request"),
    "a version in exponent form": ("/predict", {"version": "1e3"}, 422, "invalid_request"),
    "a non-ASCII digit version": ("/predict", {"version": "١"}, 422, "invalid_request"),
    "an unknown label": ("/predict", {"label": "'; DROP TABLE"}, 404, "version_not_found"),
    "a version and a label": ("/predict", {"version": "1", "label": "stable"}, 422, "invalid_request"),
    "a model in the path and the query": ("/models/mnist_convnet/predict", {"model": "x"}, 422, "invalid_request"),
    "a 10,000-character reject": ("/predict", {"reject": "n" * 10_000}, 422, "invalid_request"),
    "reject with a NUL": ("/predict", {"reject": "not_digit\x00"}, 422, "invalid_request"),
    "reject in capitals": ("/predict", {"reject": "NOT_DIGIT"}, 422, "invalid_request"),
    "an empty reject": ("/predict", {"reject": ""}, 422, "invalid_request"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_SELECTIONS))
def test_hostile_model_selection_gets_a_clear_4xx(client: httpx.Client, name: str) -> None:
    path, params, status, code = HOSTILE_SELECTIONS[name]
    response = client.post(path, params=params, json=SEVEN_JSON)
    assert response.status_code == status, f"{name}: {response.status_code} {response.text[:300]}"
    envelope = ErrorEnvelope.model_validate(response.json())
    assert envelope.error.code == code and len(envelope.error.message) < 1000, envelope
    assert client.get("/health/live").status_code == 200


def test_hostile_blank_image_with_reject_is_still_blank_not_a_crash(client: httpx.Client) -> None:
    response = client.post("/predict", params={"reject": "not_digit"}, **HOSTILE["blank white png"])  # type: ignore[arg-type]
    assert response.status_code == 422 and response.json()["error"]["code"] == "blank_image", response.text


def test_hostile_summary_selection_is_validated(client: httpx.Client) -> None:
    for params, status in (({"version": "abc"}, 422), ({"model": "x" * 300}, 422), ({"model": "nope"}, 404)):
        response = client.get("/model/summary", params=params)
        assert response.status_code == status, response.text
        ErrorEnvelope.model_validate(response.json())
