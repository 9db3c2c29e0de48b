"""POST /predict through a real server: every input form, one response shape."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from PIL import Image

from service.schemas import PredictResponse
from tests.drawing import as_person_would, encode, on_transparent_canvas


def digits_of(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    body = PredictResponse.model_validate(response.json())
    for prediction in body.predictions:
        assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-4)
        assert prediction.confidence == max(prediction.probabilities)
        assert prediction.digit == int(np.argmax(prediction.probabilities))
    assert body.model.name == "mnist_convnet" and body.model.version >= 1
    assert body.request_id == response.headers["x-request-id"]
    return [prediction.digit for prediction in body.predictions]


def test_predict_json_image_nested(client: httpx.Client, mnist_sample: dict) -> None:
    response = client.post("/predict", json={"image": mnist_sample["x_test"][0].tolist()})
    assert digits_of(response) == [int(mnist_sample["y_test"][0])]


def test_predict_json_image_flat(client: httpx.Client, mnist_sample: dict) -> None:
    response = client.post("/predict", json={"image": mnist_sample["x_test"][1].reshape(-1).tolist()})
    assert digits_of(response) == [int(mnist_sample["y_test"][1])]


def test_predict_json_images_keeps_order(client: httpx.Client, mnist_sample: dict) -> None:
    response = client.post("/predict", json={"images": mnist_sample["x_test"][:32].tolist()})
    predicted = digits_of(response)
    assert len(predicted) == 32
    assert np.mean(np.array(predicted) == mnist_sample["y_test"][:32]) >= 0.95


def test_predict_json_image_b64_png(client: httpx.Client, mnist_sample: dict) -> None:
    png = encode(as_person_would(mnist_sample["x_test"][2], seed=2))
    response = client.post("/predict", json={"image_b64": base64.b64encode(png).decode()})
    assert digits_of(response) == [int(mnist_sample["y_test"][2])]


def test_predict_json_images_b64_with_data_urls(client: httpx.Client, mnist_sample: dict) -> None:
    files = [encode(on_transparent_canvas(mnist_sample["x_test"][i])) for i in range(3)]
    urls = ["data:image/png;base64," + base64.b64encode(file).decode() for file in files]
    response = client.post("/predict", json={"images_b64": urls})
    assert digits_of(response) == mnist_sample["y_test"][:3].tolist()


def test_predict_multipart_several_files(client: httpx.Client, mnist_sample: dict) -> None:
    files = [
        ("file", (f"digit{i}.png", encode(as_person_would(mnist_sample["x_test"][i], seed=i)), "image/png"))
        for i in range(4)
    ]
    response = client.post("/predict", files=files)
    assert digits_of(response) == mnist_sample["y_test"][:4].tolist()


@pytest.mark.parametrize(
    ("content_type", "image_format", "mode"),
    [("image/png", "PNG", "L"), ("image/jpeg", "JPEG", "RGB"), ("image/gif", "GIF", "P"),
     ("image/bmp", "BMP", "RGB"), ("image/webp", "WEBP", "RGB")],
)  # fmt: skip
def test_predict_raw_image_body(
    client: httpx.Client, mnist_sample: dict, content_type: str, image_format: str, mode: str
) -> None:
    image = as_person_would(mnist_sample["x_test"][3], seed=3).convert(mode)
    response = client.post("/predict", content=encode(image, image_format), headers={"content-type": content_type})
    assert digits_of(response) == [int(mnist_sample["y_test"][3])]


def test_predict_preprocess_none_sends_pixels_as_they_are(client: httpx.Client, mnist_sample: dict) -> None:
    digit = mnist_sample["x_test"][4]
    as_file = client.post(
        "/predict?preprocess=none", content=encode(Image.fromarray(digit)), headers={"content-type": "image/png"}
    )
    as_json = client.post("/predict", json={"image": digit.tolist()})
    assert digits_of(as_file) == digits_of(as_json)
    assert as_file.json()["predictions"][0]["probabilities"] == as_json.json()["predictions"][0]["probabilities"]


def test_predict_echoes_the_client_request_id(client: httpx.Client, mnist_sample: dict) -> None:
    response = client.post(
        "/predict", json={"image": mnist_sample["x_test"][0].tolist()}, headers={"X-Request-ID": "client-42"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "client-42" and response.json()["request_id"] == "client-42"
    assert response.headers["x-served-by"]
