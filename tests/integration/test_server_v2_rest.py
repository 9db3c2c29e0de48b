"""The Open Inference Protocol (KServe V2) over REST against a real server, with stock tritonclient.http (in its
default binary mode and with binary_data=False) and with plain httpx for what tritonclient never sends.

tritonclient.http sends its bodies without a Content-Type header; the server tells JSON from binary by the
Inference-Header-Content-Length header alone.
"""

from __future__ import annotations

import base64
import io
import struct
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http
from PIL import Image
from tritonclient.utils import InferenceServerException

from service.protocols.schemas import V2InferenceResponse, V2ModelMetadata, V2ServerMetadata
from tests.conftest import VERSION

MODEL = "mnist_convnet"
INFER = f"/v2/models/{MODEL}/infer"


@pytest.fixture(scope="module")
def triton(base_url: str) -> triton_http.InferenceServerClient:
    parts = urlsplit(base_url)
    return triton_http.InferenceServerClient(
        f"{parts.hostname}:{parts.port}", connection_timeout=30, network_timeout=30
    )


@pytest.fixture(scope="module")
def digits(mnist_sample: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return mnist_sample["x_test"][:64], mnist_sample["y_test"][:64]


def unit_floats(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255)[..., np.newaxis]


def test_v2_tritonclient_health_and_metadata(triton: triton_http.InferenceServerClient) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready(MODEL)
    assert triton.is_model_ready(MODEL, VERSION)
    assert not triton.is_model_ready(MODEL, "9")
    assert not triton.is_model_ready("nope")
    server = triton.get_server_metadata()
    V2ServerMetadata.model_validate(server)
    assert "binary_tensor_data" in server["extensions"]
    metadata = triton.get_model_metadata(MODEL)
    V2ModelMetadata.model_validate(metadata)
    assert metadata["versions"] == [VERSION]
    inputs = {tensor["name"]: tensor for tensor in metadata["inputs"]}
    assert inputs["image"] == {"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}
    assert inputs["image_uint8"]["datatype"] == "UINT8" and inputs["image_bytes"]["datatype"] == "BYTES"
    outputs = {tensor["name"]: tensor for tensor in metadata["outputs"]}
    assert set(outputs) == {"probabilities", "digit", "digit_score", "is_digit"}  # the committed version checks
    assert outputs["is_digit"] == {"name": "is_digit", "datatype": "BOOL", "shape": [-1]}
    assert triton.get_model_metadata(MODEL, VERSION)["versions"] == [VERSION]


def test_v2_tritonclient_binary_batch_of_real_digits(
    triton: triton_http.InferenceServerClient, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = digits
    tensor = triton_http.InferInput("image", [len(images), 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(unit_floats(images))  # binary by default, outputs asked as binary too
    result = triton.infer(MODEL, [tensor], request_id="batch-1")
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == VERSION and response["id"] == "batch-1"
    assert all("binary_data_size" in output["parameters"] for output in response["outputs"])
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (64, 10) and probabilities.dtype == np.float32
    assert (result.as_numpy("digit") == labels).mean() >= 0.96
    assert (probabilities.argmax(axis=1) == result.as_numpy("digit")).all()


def test_v2_tritonclient_json_mode_and_output_selection(
    triton: triton_http.InferenceServerClient, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = digits
    tensor = triton_http.InferInput("image", [8, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(unit_floats(images[:8]), binary_data=False)
    wanted = [triton_http.InferRequestedOutput("digit", binary_data=False)]
    result = triton.infer(MODEL, [tensor], outputs=wanted, model_version=VERSION)
    response = result.get_response()
    assert [output["name"] for output in response["outputs"]] == ["digit"]
    assert response["outputs"][0]["data"] == result.as_numpy("digit").tolist()  # JSON data, not binary
    assert (result.as_numpy("digit") == labels[:8]).mean() >= 7 / 8
    V2InferenceResponse.model_validate(response)


def test_v2_tritonclient_uint8_input(
    triton: triton_http.InferenceServerClient, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = digits
    tensor = triton_http.InferInput("image_uint8", [16, 28, 28, 1], "UINT8")
    tensor.set_data_from_numpy(images[:16, :, :, np.newaxis])
    result = triton.infer(MODEL, [tensor])
    assert (result.as_numpy("digit") == labels[:16]).mean() >= 0.9


def test_v2_tritonclient_errors_are_exceptions_with_the_message(triton: triton_http.InferenceServerClient) -> None:
    tensor = triton_http.InferInput("image", [1, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 28, 28, 1), dtype=np.float32))
    with pytest.raises(InferenceServerException) as unknown:
        triton.infer("nope", [tensor])
    assert unknown.value.status() == "404" and "no model named 'nope'" in unknown.value.message()
    wrong = triton_http.InferInput("image", [1, 28, 28], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 28, 28), dtype=np.float32))
    with pytest.raises(InferenceServerException) as shape:
        triton.infer(MODEL, [wrong])
    assert shape.value.status() == "400" and "expected image (FP32 [-1, 28, 28, 1])" in shape.value.message()


def png_of(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(255 - image).resize((112, 112)).save(buffer, format="PNG")  # dark on light, enlarged
    return buffer.getvalue()


def test_v2_bytes_input_of_image_files_json_and_binary(
    client: httpx.Client, triton: triton_http.InferenceServerClient, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = digits
    files = [png_of(image) for image in images[:6]]
    body = {
        "inputs": [
            {
                "name": "image_bytes",
                "shape": [6],
                "datatype": "BYTES",
                "data": [base64.b64encode(f).decode() for f in files],
            }
        ]
    }
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    digit = next(output for output in response.json()["outputs"] if output["name"] == "digit")
    assert np.mean(np.array(digit["data"]) == labels[:6]) >= 5 / 6
    tensor = triton_http.InferInput("image_bytes", [6], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
    result = triton.infer(MODEL, [tensor])
    assert (result.as_numpy("digit") == np.array(digit["data"])).all()


def test_v2_nested_and_flat_data_give_the_same_answer(
    client: httpx.Client, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    pixels = unit_floats(digits[0][:2])
    answers = []
    for data in (pixels.tolist(), pixels.ravel().tolist()):
        body = {"inputs": [{"name": "image", "shape": [2, 28, 28, 1], "datatype": "FP32", "data": data}]}
        response = client.post(INFER, json=body)
        assert response.status_code == 200, response.text
        answers.append(response.json()["outputs"])
    assert answers[0] == answers[1]


def test_v2_versioned_paths(client: httpx.Client) -> None:
    body = {"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.0] * 784}]}
    assert client.post(f"/v2/models/{MODEL}/versions/{VERSION}/infer", json=body).status_code == 200
    missing = client.post(f"/v2/models/{MODEL}/versions/5/infer", json=body)
    assert missing.status_code == 404 and "version 5" in missing.json()["error"]
    assert client.get(f"/v2/models/{MODEL}/versions/{VERSION}/ready").status_code == 200
    assert client.get(f"/v2/models/{MODEL}/versions/5/ready").status_code == 404
    assert client.get("/v2/health/live").json() == {"live": True}


def raw_request(document: dict[str, Any], binary: bytes, header_length: int | None = None) -> dict[str, Any]:
    header = orjson.dumps(document)
    length = len(header) if header_length is None else header_length
    return {"content": header + binary, "headers": {"Inference-Header-Content-Length": str(length)}}


def fp32_input(shape: list[int], **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "image", "shape": shape, "datatype": "FP32", **extra}]}


ONE_IMAGE = np.zeros(784, dtype="<f4").tobytes()
BAD_TENSORS: dict[str, dict[str, Any]] = {
    "empty body": {"content": b""},
    "not JSON": {"content": b"\x00\x01binary without its header"},
    "no inputs": {"json": {"inputs": []}},
    "two inputs": {"json": {"inputs": [fp32_input([1, 28, 28, 1], data=[0] * 784)["inputs"][0]] * 2}},
    "unknown input": {"json": {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}]}},
    "wrong datatype": {
        "json": {"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "INT8", "data": [0] * 784}]}
    },
    "uint8 sent as image": {
        "json": {"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0] * 784}]}
    },
    "wrong shape": {"json": fp32_input([1, 784], data=[0] * 784)},
    "zero batch": {"json": fp32_input([0, 28, 28, 1], data=[])},
    "shape not integers": {"json": fp32_input([1, 28.0, 28, 1], data=[0] * 784)},
    "data length is not the shape's": {"json": fp32_input([2, 28, 28, 1], data=[0] * 784)},
    "NaN in binary": raw_request(
        fp32_input([1, 28, 28, 1], parameters={"binary_data_size": 3136}), np.full(784, np.nan, dtype="<f4").tobytes()
    ),
    "infinity in binary": raw_request(
        fp32_input([1, 28, 28, 1], parameters={"binary_data_size": 3136}), np.full(784, np.inf, dtype="<f4").tobytes()
    ),
    "0-255 floats": {"json": fp32_input([1, 28, 28, 1], data=[255.0] * 784)},
    "a string in data": {"json": fp32_input([1, 28, 28, 1], data=["0"] * 784)},
    "a boolean in data": {"json": fp32_input([1, 28, 28, 1], data=[True] * 784)},
    "uint8 over 255": {
        "json": {"inputs": [{"name": "image_uint8", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [256] * 784}]}
    },
    "uint8 as floats": {
        "json": {"inputs": [{"name": "image_uint8", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0.5] * 784}]}
    },
    "binary size lies (too large)": raw_request(
        fp32_input([1, 28, 28, 1], parameters={"binary_data_size": 9999}), ONE_IMAGE
    ),
    "binary size lies (too small)": raw_request(
        fp32_input([1, 28, 28, 1], parameters={"binary_data_size": 100}), ONE_IMAGE
    ),
    "binary size for the wrong shape": raw_request(
        fp32_input([2, 28, 28, 1], parameters={"binary_data_size": 3136}), ONE_IMAGE
    ),
    "binary size negative": raw_request(fp32_input([1, 28, 28, 1], parameters={"binary_data_size": -4}), ONE_IMAGE),
    "header length past the body": raw_request(
        fp32_input([1, 28, 28, 1], parameters={"binary_data_size": 3136}), ONE_IMAGE, 10**6
    ),
    "header length not a number": {"content": b"{}", "headers": {"Inference-Header-Content-Length": "ten"}},
    "raw binary request": raw_request(fp32_input([1, 28, 28, 1]), ONE_IMAGE, 0),
    "data and binary size both": raw_request(
        fp32_input([1, 28, 28, 1], data=[0] * 784, parameters={"binary_data_size": 3136}), ONE_IMAGE
    ),
    "neither data nor binary": {"json": fp32_input([1, 28, 28, 1])},
    "id not a string but a list": {"json": {**fp32_input([1, 28, 28, 1], data=[0] * 784), "id": ["x"]}},
    "unknown output": {"json": {**fp32_input([1, 28, 28, 1], data=[0] * 784), "outputs": [{"name": "logits"}]}},
    "binary_data not a boolean": {
        "json": {
            **fp32_input([1, 28, 28, 1], data=[0] * 784),
            "outputs": [{"name": "digit", "parameters": {"binary_data": "yes"}}],
        }
    },
    "bytes element lies about its length": raw_request(
        {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}]},
        struct.pack("<I", 1000) + b"\x89PNG",
    ),
    "bytes not an image": {
        "json": {
            "inputs": [
                {
                    "name": "image_bytes",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [base64.b64encode(b"hello").decode()],
                }
            ]
        }
    },
    "bytes not base64": {
        "json": {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["***"]}]}
    },
    "bytes count is not the shape's": {
        "json": {"inputs": [{"name": "image_bytes", "shape": [2], "datatype": "BYTES", "data": ["aGk="]}]}
    },
    "too many images": {"json": fp32_input([257, 28, 28, 1], data=[0] * 784 * 257)},
    "id not a string": {"json": {**fp32_input([1, 28, 28, 1], data=[0] * 784), "id": 5}},
    "ragged nested data": {"json": fp32_input([2, 28, 28, 1], data=[[0.0] * 784, [0.0] * 783])},
}


@pytest.mark.parametrize("case", list(BAD_TENSORS))
def test_v2_bad_tensor_is_a_400_with_a_message(client: httpx.Client, case: str) -> None:
    response = client.post(INFER, **BAD_TENSORS[case])
    assert response.status_code == 400, f"{case}: {response.status_code} {response.text}"
    assert set(response.json()) == {"error"}
    assert len(response.json()["error"]) > 20


def test_v2_unknown_model_and_paths_answer_404_in_the_protocols_form(client: httpx.Client) -> None:
    assert client.get("/v2/models/nope").status_code == 404
    assert set(client.get("/v2/models/nope").json()) == {"error"}
    assert client.get("/v2/models/nope/ready").status_code == 404
    response = client.get("/v2/no/such/thing")
    assert response.status_code == 404 and set(response.json()) == {"error"}


def test_v2_empty_outputs_list_means_every_output(client: httpx.Client) -> None:
    """`"outputs": []` names no output, as leaving it out does (it once failed with a 500)."""
    response = client.post(INFER, json={**fp32_input([1, 28, 28, 1], data=[0.0] * 784), "outputs": []})
    assert response.status_code == 200, response.text
    names = [output["name"] for output in response.json()["outputs"]]
    assert names == ["probabilities", "digit", "digit_score", "is_digit"]  # every output of the served version
