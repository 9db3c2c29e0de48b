"""TF Serving's REST API (/v1) against a real server, with plain httpx as TF Serving's own clients send it.

The expected shapes are TF Serving's documented ones (g3doc/api_rest.md and util/json_tensor.cc): row format
answers {"predictions": [<one bare list per instance>]} for a single-output signature, columnar answers
{"outputs": <the bare tensor>}; status versions are strings; errors are {"error": "<message>"}.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from service.protocols.schemas import TFServingMetadata, TFServingModelStatus
from tests.conftest import VERSION

MODEL = "mnist_convnet"
PREDICT = f"/v1/models/{MODEL}:predict"


def instances(digits: np.ndarray) -> list[Any]:
    """uint8 (n, 28, 28) → the signature's input as JSON: n lists of [28, 28, 1] floats in [0, 1]."""
    return (digits.astype(np.float32)[..., np.newaxis] / 255).tolist()


@pytest.fixture(scope="module")
def digits(mnist_sample: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return mnist_sample["x_test"][:32], mnist_sample["y_test"][:32]


def test_tfserving_row_format_predicts_real_digits(client: httpx.Client, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    response = client.post(PREDICT, json={"instances": instances(images)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["predictions"]
    predictions = np.array(body["predictions"])
    assert predictions.shape == (32, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1, atol=1e-4)
    assert (predictions.argmax(axis=1) == labels).mean() >= 0.96
    assert response.headers["x-request-id"]


def test_tfserving_row_format_of_named_objects_equals_bare_values(
    client: httpx.Client, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, _ = digits
    bare = client.post(PREDICT, json={"instances": instances(images[:3])}).json()
    named = client.post(PREDICT, json={"instances": [{"image": value} for value in instances(images[:3])]})
    assert named.status_code == 200, named.text
    np.testing.assert_allclose(named.json()["predictions"], bare["predictions"], atol=1e-6)


def test_tfserving_columnar_format_answers_outputs(client: httpx.Client, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    for inputs in (instances(images[:4]), {"image": instances(images[:4])}):
        response = client.post(PREDICT, json={"inputs": inputs, "signature_name": "serving_default"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert list(body) == ["outputs"]
        assert np.array(body["outputs"]).shape == (4, 10)
        assert (np.array(body["outputs"]).argmax(axis=1) == labels[:4]).all()


def test_tfserving_floats_are_used_as_sent_not_rounded_to_bytes(client: httpx.Client) -> None:
    """The signature reads floats: 0.5 must reach the model as 0.5 (TF Serving passes them through)."""
    half = np.full((1, 28, 28, 1), 0.5, dtype=np.float32).tolist()
    near = np.full((1, 28, 28, 1), 0.502, dtype=np.float32).tolist()
    first = client.post(PREDICT, json={"instances": half}).json()["predictions"][0]
    second = client.post(PREDICT, json={"instances": near}).json()["predictions"][0]
    assert first != second


def test_tfserving_version_and_label_paths_choose_the_version(client: httpx.Client) -> None:
    body = {"instances": np.zeros((1, 28, 28, 1)).tolist()}
    assert client.post(f"/v1/models/{MODEL}/versions/{VERSION}:predict", json=body).status_code == 200
    response = client.post(f"/v1/models/{MODEL}/versions/9:predict", json=body)
    assert response.status_code == 404
    assert response.json()["error"].startswith(f"Servable not found for request: Specific({MODEL}, 9)")
    response = client.post(f"/v1/models/{MODEL}/labels/nope:predict", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("Unrecognized servable version label: nope")


def test_tfserving_model_status_is_tf_servings_json(client: httpx.Client) -> None:
    response = client.get(f"/v1/models/{MODEL}")
    assert response.status_code == 200
    status = TFServingModelStatus.model_validate(response.json())
    assert response.json()["model_version_status"][0] == {
        "version": VERSION,
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    assert status.model_version_status[0].version == VERSION
    assert client.get(f"/v1/models/{MODEL}/versions/{VERSION}").json() == response.json()
    missing = client.get(f"/v1/models/{MODEL}/versions/7")
    assert missing.status_code == 404 and missing.json() == {"error": f"Could not find version 7 of model {MODEL}"}
    unknown = client.get("/v1/models/nope")
    assert unknown.status_code == 404 and unknown.json() == {"error": "Could not find any versions of model nope"}


def test_tfserving_metadata_is_the_signature_def_map(client: httpx.Client) -> None:
    response = client.get(f"/v1/models/{MODEL}/metadata")
    assert response.status_code == 200
    body = response.json()
    TFServingMetadata.model_validate(body)
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": VERSION}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    image = signature["inputs"]["image"]
    assert image["dtype"] == "DT_FLOAT"
    assert [dim["size"] for dim in image["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
    probabilities = signature["outputs"]["probabilities"]
    assert [dim["size"] for dim in probabilities["tensor_shape"]["dim"]] == ["-1", "10"]


@pytest.mark.parametrize("verb", ["classify", "regress"])
def test_tfserving_classify_and_regress_answer_tf_servings_error(client: httpx.Client, verb: str) -> None:
    response = client.post(f"/v1/models/{MODEL}:{verb}", json={"examples": [{"x": 1.0}]})
    assert response.status_code == 400
    what = "classification" if verb == "classify" else "regression"
    assert response.json()["error"].startswith(f"No {what} inputs found in SignatureDef: ")
    assert 'method_name: "tensorflow/serving/predict"' in response.json()["error"]
    without_examples = client.post(f"/v1/models/{MODEL}:{verb}", json={"instances": []})
    assert without_examples.status_code == 400
    assert "key 'examples' is expected" in without_examples.json()["error"]


ZERO = np.zeros((28, 28, 1)).tolist()
ROW_27 = np.zeros((27, 28, 1)).tolist()


def one_pixel(value: Any, row: int = 0, column: int = 0) -> list[Any]:
    """`instances` of one image, all zeros but one pixel."""
    image = np.zeros((28, 28, 1)).tolist()
    image[row][column] = [value]
    return [image]


BAD_PREDICT_BODIES: dict[str, tuple[Any, str]] = {
    "empty body": (b"", "JSON Parse error"),
    "not JSON": (b"{instances", "JSON Parse error"),
    "an array": ([1, 2], "Is not object"),
    "no instances or inputs": ({"signature": 1}, "Missing 'inputs' or 'instances' key"),
    "both keys": ({"instances": [ZERO], "inputs": [ZERO]}, "only one of 'inputs' or 'instances'"),
    "unknown signature": ({"signature_name": "other", "instances": [ZERO]}, 'Serving signature name: "other"'),
    "signature not a string": ({"signature_name": 3, "instances": [ZERO]}, "'signature_name' key must be a string"),
    "instances not a list": ({"instances": 5}, "Expecting 'instances' to be an list/array"),
    "no instances": ({"instances": []}, "No values in 'instances' array"),
    "a 27-row instance": ({"instances": [ROW_27]}, "Expecting shape [28, 28, 1] but got: [27, 28, 1]"),
    "ragged instances": ({"instances": [ZERO, ROW_27]}, "instances is ragged"),
    "2-D instance": ({"instances": [np.zeros((28, 28)).tolist()]}, "Expecting shape [28, 28, 1] but got: [28, 28]"),
    "a string pixel": ({"instances": one_pixel("0.5")}, 'instances[0][0][0][0] is "0.5"'),
    "a boolean pixel": ({"instances": one_pixel(True)}, "instances[0][0][0][0] is true"),
    "a null pixel": ({"instances": one_pixel(None)}, "instances[0][0][0][0] is null"),
    "255 instead of 1": ({"instances": one_pixel(255)}, "scale 0-255 pixels by 1/255"),
    "a negative pixel": ({"instances": one_pixel(-0.5, 0, 27)}, "instances[0][0][27][0] is -0.5"),
    "an overflowing float": ({"instances": one_pixel(1e39)}, "instances[0][0][0][0] is"),
    "mixed objects and lists": ({"instances": [{"image": ZERO}, ZERO]}, "Expecting object but got a list"),
    "a wrong key": ({"instances": [{"pixels": ZERO}]}, "keys must be equal to: image"),
    "columnar without batch": ({"inputs": ZERO}, "inputs has shape [28, 28, 1]"),
    "columnar empty batch": ({"inputs": []}, "inputs has shape [0]"),
    "columnar missing name": ({"inputs": {"pixels": [ZERO]}}, "Missing named input: image"),
    "nested too deep": ({"instances": [[[[[0.0]]]] * 28] * 28}, "Expecting shape [28, 28, 1]"),
    "deep nesting": ({"instances": [[[[[[[[[[0]]]]]]]]]]}, "Expecting shape"),
    "too many instances": ({"instances": [ZERO] * 257}, "257 instances sent; the limit is 256"),
}


@pytest.mark.parametrize("case", list(BAD_PREDICT_BODIES))
def test_tfserving_bad_predict_body_is_a_400_with_a_message(client: httpx.Client, case: str) -> None:
    body, expected = BAD_PREDICT_BODIES[case]
    content = body if isinstance(body, bytes) else None
    response = client.post(PREDICT, content=content, json=None if content is not None else body)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert expected in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "expected"),
    [
        ("POST", "/v1/models/mnist_convnet:PREDICT", 400, "Malformed request: POST /v1/models/mnist_convnet:PREDICT"),
        ("GET", "/v1/models/mnist_convnet:predict", 405, "Malformed request: GET"),
        ("POST", "/v1/models/mnist_convnet/metadata", 405, "Malformed request: POST"),
        ("PUT", "/v1/models/mnist_convnet", 405, "Malformed request: PUT /v1/models/mnist_convnet; use GET"),
        ("DELETE", "/v1/models/mnist_convnet:predict", 405, "Malformed request: DELETE"),
        ("GET", "/v1/models", 400, "Missing model name in request."),
        ("GET", "/v1/models/mnist_convnet/versions/99999999999999999999999", 400, "Failed to convert version"),
        ("POST", "/v1/models/nope:predict", 404, "Servable not found for request: Latest(nope)"),
        ("GET", "/v1/models/nope/metadata", 404, "Servable not found for request: Latest(nope)"),
        ("GET", "/v1/something", 400, "Malformed request: GET /v1/something"),
    ],
)
def test_tfserving_bad_urls_answer_in_tf_servings_form(
    client: httpx.Client, method: str, path: str, status: int, expected: str
) -> None:
    response = client.request(method, path, json={"instances": [ZERO]} if method == "POST" else None)
    assert response.status_code == status, response.text
    assert expected in response.json()["error"]


def test_tfserving_oversized_body_is_refused_in_tf_servings_form(client: httpx.Client) -> None:
    response = client.post(PREDICT, content=b"{" + b" " * (5 * 1024 * 1024) + b"}")
    assert response.status_code == 413
    assert "the limit is" in response.json()["error"]
