"""/predict?include=input,feature_maps through a real server: the image the model saw, and what each convolution
and pooling layer made of it; and the clear refusals around them."""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.schemas import PredictResponse
from tests.conftest import COMMITTED_MODEL, VERSION
from tests.drawing import as_person_would, encode
from tests.integration.conftest import ServerProcess, local_only, ready, start_server, wait_until_ready


def decoded_png(text: str) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


def test_include_input_gives_back_exactly_the_pixels_the_model_read(client: httpx.Client, mnist_sample: dict) -> None:
    sent = mnist_sample["x_test"][:3]
    response = client.post("/predict", params={"include": "input"}, json={"images": sent.tolist()})
    assert response.status_code == 200, response.text
    predictions = PredictResponse.model_validate(response.json()).predictions
    assert [prediction.feature_maps for prediction in predictions] == [None] * 3
    for prediction, pixels in zip(predictions, sent, strict=True):
        assert prediction.input is not None
        np.testing.assert_array_equal(decoded_png(prediction.input), pixels)  # JSON pixels are used as they are


def test_include_input_shows_the_normalised_digit_of_an_uploaded_photo(
    client: httpx.Client, mnist_sample: dict
) -> None:
    photo = encode(as_person_would(mnist_sample["x_test"][0], seed=3))  # black on white, enlarged, off-centre
    response = client.post("/predict?include=input", content=photo, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    seen = decoded_png(response.json()["predictions"][0]["input"])
    assert seen.shape == (28, 28)
    assert seen[0].max() == 0 and seen[:, 0].max() == 0  # white on black, with MNIST's empty border
    rows, columns = np.nonzero(seen > 0)
    assert 19 <= max(rows.max() - rows.min(), columns.max() - columns.min()) + 1 <= 21  # the longer side is ~20 px
    mass = seen.astype(float)
    centre = (mass.sum(axis=1) @ np.arange(28) / mass.sum(), mass.sum(axis=0) @ np.arange(28) / mass.sum())
    assert abs(centre[0] - 13.5) < 1.5 and abs(centre[1] - 13.5) < 1.5


def served_runtime(client: httpx.Client) -> str:
    """The runtime of the default model's served version (the slim image's stack runs LiteRT)."""
    models = client.get("/models").json()
    default = next(model for model in models["models"] if model["default"])
    return str(next(version["runtime"] for version in default["versions"] if version["state"] == "AVAILABLE"))


def refused_without_feature_maps(client: httpx.Client, image: list) -> bool:
    """On a runtime without feature maps (LiteRT, ONNX Runtime), the answer is 501 not_supported: check it."""
    runtime = served_runtime(client)
    if runtime == "savedmodel":
        return False
    response = client.post("/predict?include=feature_maps", json={"image": image})
    assert response.status_code == 501 and response.json()["error"]["code"] == "not_supported"
    assert f"the {runtime} runtime cannot show feature maps" in response.json()["error"]["message"]
    return True


def test_include_feature_maps_gives_every_conv_and_pooling_layer_with_its_shape(
    client: httpx.Client, mnist_sample: dict
) -> None:
    if refused_without_feature_maps(client, mnist_sample["x_test"][0].tolist()):
        return
    summary = client.get("/model/summary").json()
    expected = [
        (layer["name"], layer["output_shape"][1:])
        for layer in summary["layers"]
        if layer["type"] in ("Conv2D", "MaxPooling2D")
    ]
    response = client.post(
        "/predict",
        params=[("include", "feature_maps"), ("include", "input")],
        json={"image": mnist_sample["x_test"][0].tolist()},
    )
    assert response.status_code == 200, response.text
    prediction = PredictResponse.model_validate(response.json()).predictions[0]
    assert prediction.input is not None and prediction.feature_maps is not None
    assert [(layer.layer, layer.shape) for layer in prediction.feature_maps] == expected
    assert expected[0] == ("conv2d", [26, 26, 32])  # the seed's first map
    for layer in prediction.feature_maps:
        values = np.frombuffer(base64.b64decode(layer.data), dtype=np.uint8).reshape(layer.shape)
        assert len(layer.scale) == layer.shape[-1] and min(layer.scale) >= 0
        # Each channel is scaled by its own maximum: a channel with any activation reaches 255.
        lit = np.array(layer.scale) > 0
        assert (values.reshape(-1, layer.shape[-1]).max(axis=0)[lit] == 255).all()
        assert (values.reshape(-1, layer.shape[-1])[:, ~lit] == 0).all()


def test_the_first_feature_map_follows_the_digit(client: httpx.Client, mnist_sample: dict) -> None:
    """conv2d's activations sit where the ink is: a blank corner of the digit gives a quiet corner of the map."""
    digit = mnist_sample["x_test"][0]
    if refused_without_feature_maps(client, digit.tolist()):
        return
    response = client.post("/predict?include=feature_maps", json={"image": digit.tolist()})
    first = response.json()["predictions"][0]["feature_maps"][0]
    values = np.frombuffer(base64.b64decode(first["data"]), dtype=np.uint8).reshape(first["shape"]).astype(float)
    energy = values.sum(axis=2)  # (26, 26)
    ink = digit[1:27, 1:27] > 0
    assert energy[ink].mean() > 2 * energy[~ink].mean()


@pytest.mark.parametrize(
    ("params", "body", "message"),
    [
        ({"include": "feature_maps"}, "two", "takes one image per request, got 2"),
        ({"include": "everything"}, "one", "include takes input and feature_maps"),
        ({"include": "input,weights"}, "one", "got 'weights'"),
        ({"include": "x" * 5000}, "one", "include takes"),
    ],
)
def test_include_refusals_say_what_is_wrong(
    client: httpx.Client, mnist_sample: dict, params: dict, body: str, message: str
) -> None:
    images = mnist_sample["x_test"][:2].tolist()
    payload = {"images": images} if body == "two" else {"image": images[0]}
    response = client.post("/predict", params=params, json=payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and message in error["message"]
    assert len(error["message"]) < 200


@pytest.fixture(scope="module")
def litert_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("litert") / "server.log"
    litert = {"DIGIT_SERVE_RUNTIME": "litert"}
    with ready(start_server(COMMITTED_MODEL, log, "--model-version", VERSION, env=litert)) as server:
        yield server


@local_only
def test_a_runtime_without_feature_maps_answers_501_and_still_classifies(
    litert_server: ServerProcess, mnist_sample: dict
) -> None:
    image = {"image": mnist_sample["x_test"][0].tolist()}
    refused = httpx.post(f"{litert_server.url}/predict?include=feature_maps", json=image)
    assert refused.status_code == 501
    assert refused.json()["error"]["code"] == "not_supported"
    assert "litert runtime cannot show feature maps" in refused.json()["error"]["message"]
    answered = httpx.post(f"{litert_server.url}/predict?include=input", json=image)
    assert answered.status_code == 200 and answered.json()["predictions"][0]["input"]


@local_only
def test_a_version_exported_without_the_signature_answers_501_saying_to_reexport(
    tmp_path: Path, mnist_sample: dict
) -> None:
    shutil.copytree(COMMITTED_MODEL / "1", tmp_path / "mnist_convnet" / "1")  # exported before feature_maps
    shutil.copy(COMMITTED_MODEL.parent / "model_card.schema.json", tmp_path / "model_card.schema.json")
    server = start_server(tmp_path / "mnist_convnet", tmp_path / "server.log", "--model-version", "1")
    try:
        wait_until_ready(server)
        response = httpx.post(
            f"{server.url}/predict?include=feature_maps", json={"image": mnist_sample["x_test"][0].tolist()}
        )
    finally:
        server.stop()
    assert response.status_code == 501, response.text
    assert "exported without the feature_maps signature" in response.json()["error"]["message"]
    assert "re-export" in response.json()["error"]["message"]
