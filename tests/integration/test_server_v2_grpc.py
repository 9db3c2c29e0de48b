"""The Open Inference Protocol over gRPC against a real server, with stock tritonclient.grpc (which speaks Triton's
superset of KServe's proto; the RPCs used here share their messages) and with the standard health service.

tritonclient.grpc registers its own copy of the `inference` proto messages in protobuf's global pool, so this
process never imports the service's generated stubs (service/app.py imports them only when it serves gRPC).
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import VERSION

MODEL = "mnist_convnet"


@pytest.fixture(scope="module")
def triton(grpc_target: str) -> triton_grpc.InferenceServerClient:
    return triton_grpc.InferenceServerClient(grpc_target)


@pytest.fixture(scope="module")
def digits(mnist_sample: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return mnist_sample["x_test"][:64], mnist_sample["y_test"][:64]


def image_input(pixels: np.ndarray, name: str = "image", datatype: str = "FP32") -> triton_grpc.InferInput:
    tensor = triton_grpc.InferInput(name, list(pixels.shape), datatype)
    tensor.set_data_from_numpy(pixels)
    return tensor


def test_grpc_health_and_metadata(triton: triton_grpc.InferenceServerClient) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready(MODEL)
    assert triton.is_model_ready(MODEL, VERSION)
    server = triton.get_server_metadata(as_json=True)
    assert server["name"] == "digit-serve" and "binary_tensor_data" in server["extensions"]
    metadata = triton.get_model_metadata(MODEL, as_json=True)
    assert metadata["versions"] == [VERSION] and metadata["platform"] == "tensorflow_savedmodel"
    inputs = {tensor["name"]: tensor for tensor in metadata["inputs"]}
    assert inputs["image"]["datatype"] == "FP32" and inputs["image"]["shape"] == ["-1", "28", "28", "1"]
    outputs = {tensor["name"]: tensor for tensor in metadata["outputs"]}
    assert set(outputs) == {"probabilities", "digit", "digit_score", "is_digit"}  # the committed version checks
    assert outputs["is_digit"]["datatype"] == "BOOL" and outputs["digit_score"]["shape"] == ["-1"]


def test_grpc_batch_of_real_digits(
    triton: triton_grpc.InferenceServerClient, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = digits
    pixels = (images.astype(np.float32) / 255)[..., np.newaxis]
    result = triton.infer(MODEL, [image_input(pixels)], request_id="grpc-1")
    response = result.get_response()
    assert response.model_name == MODEL and response.model_version == VERSION and response.id == "grpc-1"
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (64, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    assert (result.as_numpy("digit") == labels).mean() >= 0.96


def test_grpc_says_which_images_are_digits(
    triton: triton_grpc.InferenceServerClient, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    from bench import nondigits

    letters = [sample.data for sample in nondigits.samples("drawn_letters", 8, seed=11)]
    files = np.array([*letters, *(encode_png(image) for image in digits[0][:8])], dtype=np.object_)
    tensor = triton_grpc.InferInput("image_bytes", [len(files)], "BYTES")
    tensor.set_data_from_numpy(files)
    wanted = [triton_grpc.InferRequestedOutput(name) for name in ("is_digit", "digit_score")]
    result = triton.infer(MODEL, [tensor], outputs=wanted)
    is_digit, scores = result.as_numpy("is_digit"), result.as_numpy("digit_score")
    assert is_digit.dtype == np.bool_ and scores.dtype == np.float32 and is_digit.shape == (16,)
    assert is_digit[8:].all() and (~is_digit[:8]).sum() >= 6
    assert scores[8:].min() > scores[:8].min()


def encode_png(digit: np.ndarray) -> bytes:
    from tests.drawing import as_person_would, encode

    return encode(as_person_would(digit, seed=int(digit.sum()) % 1000))


def test_grpc_output_selection_and_uint8_and_bytes_inputs(
    triton: triton_grpc.InferenceServerClient, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = digits
    only_digit = [triton_grpc.InferRequestedOutput("digit")]
    result = triton.infer(
        MODEL, [image_input(images[:8, :, :, np.newaxis], "image_uint8", "UINT8")], outputs=only_digit
    )
    assert [output.name for output in result.get_response().outputs] == ["digit"]
    assert (result.as_numpy("digit") == labels[:8]).mean() >= 7 / 8

    from tests.integration.test_server_v2_rest import png_of

    files = np.array([png_of(image) for image in images[:4]], dtype=np.object_)
    by_file = triton.infer(MODEL, [image_input(files, "image_bytes", "BYTES")], outputs=only_digit)
    assert (by_file.as_numpy("digit") == labels[:4]).mean() >= 3 / 4


@pytest.mark.parametrize(
    ("tensor", "code", "expected"),
    [
        (lambda: image_input(np.zeros((1, 28, 28), np.float32)), "INVALID_ARGUMENT", "has shape [1, 28, 28]"),
        (lambda: image_input(np.zeros((1, 28, 28, 1), np.float64), datatype="FP64"), "INVALID_ARGUMENT", "FP64"),
        (lambda: image_input(np.full((1, 28, 28, 1), np.nan, np.float32)), "INVALID_ARGUMENT", "is NaN"),
        (lambda: image_input(np.full((1, 28, 28, 1), 9.0, np.float32)), "INVALID_ARGUMENT", "in [0, 1]"),
        (lambda: image_input(np.zeros((1, 28, 28, 1), np.float32), "pixels"), "INVALID_ARGUMENT", "no input named"),
        (
            lambda: image_input(np.array([b"not an image"], np.object_), "image_bytes", "BYTES"),
            "INVALID_ARGUMENT",
            "file",
        ),
        (lambda: image_input(np.zeros((257, 28, 28, 1), np.float32)), "INVALID_ARGUMENT", "the limit is 256"),
    ],
)
def test_grpc_bad_tensor_is_invalid_argument_with_a_message(
    triton: triton_grpc.InferenceServerClient, tensor: object, code: str, expected: str
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        triton.infer(MODEL, [tensor()])  # type: ignore[operator]
    assert raised.value.status() == f"StatusCode.{code}"
    assert expected in raised.value.message()


def test_grpc_unknown_model_and_version_are_not_found(triton: triton_grpc.InferenceServerClient) -> None:
    tensor = image_input(np.zeros((1, 28, 28, 1), np.float32))
    with pytest.raises(InferenceServerException) as model:
        triton.infer("nope", [tensor])
    assert model.value.status() == "StatusCode.NOT_FOUND" and "available models" in model.value.message()
    with pytest.raises(InferenceServerException) as version:
        triton.infer(MODEL, [tensor], model_version="7")
    assert version.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as ready:
        triton.is_model_ready("nope")
    assert ready.value.status() == "StatusCode.NOT_FOUND"


def test_grpc_message_over_the_body_limit_is_resource_exhausted(triton: triton_grpc.InferenceServerClient) -> None:
    too_large = np.zeros((1400, 28, 28, 1), np.float32)  # 4.4 MB, over the 4 MiB body limit
    with pytest.raises(InferenceServerException) as raised:
        triton.infer(MODEL, [image_input(too_large)])
    assert raised.value.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_grpc_standard_health_service(grpc_target: str) -> None:
    with grpc.insecure_channel(grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            stub.Check(health_pb2.HealthCheckRequest(service="other"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def crafted(**fields: object) -> object:
    """A ModelInferRequest built by hand (tritonclient's messages are the proto's), for what no client would send."""
    from tritonclient.grpc import service_pb2

    return service_pb2.ModelInferRequest(model_name=MODEL, **fields)


def send(grpc_target: str, request: object) -> object:
    from tritonclient.grpc import service_pb2_grpc

    with grpc.insecure_channel(grpc_target) as channel:
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)


def fp32_tensor(shape: list[int], **contents: object) -> dict[str, object]:
    return {"name": "image", "datatype": "FP32", "shape": shape, **({"contents": contents} if contents else {})}


ONE_IMAGE_RAW = np.zeros(784, "<f4").tobytes()
BAD_MESSAGES = {
    "no inputs": ({}, "send exactly one input tensor"),
    "raw entries for no inputs": ({"raw_input_contents": [ONE_IMAGE_RAW]}, "raw_input_contents has 1 entries"),
    "raw size lies": ({"inputs": [fp32_tensor([1, 28, 28, 1])], "raw_input_contents": [b"\x00" * 100]}, "takes 3,136"),
    "raw for two images, shape for one": (
        {"inputs": [fp32_tensor([1, 28, 28, 1])], "raw_input_contents": [ONE_IMAGE_RAW * 2]},
        "has 6,272 bytes",
    ),
    "contents and raw both": (
        {"inputs": [fp32_tensor([1, 28, 28, 1], fp32_contents=[0.0] * 784)], "raw_input_contents": [ONE_IMAGE_RAW]},
        "both contents and raw_input_contents",
    ),
    "typed contents too short": ({"inputs": [fp32_tensor([1, 28, 28, 1], fp32_contents=[0.0] * 10)]}, "holds 10"),
    "typed NaN": ({"inputs": [fp32_tensor([1, 28, 28, 1], fp32_contents=[float("nan")] * 784)]}, "is NaN"),
    "no data at all": ({"inputs": [fp32_tensor([1, 28, 28, 1])]}, "has no data"),
    "a shape of a trillion": ({"inputs": [fp32_tensor([10**12, 28, 28, 1])]}, "the limit is 256"),
    "negative batch": ({"inputs": [fp32_tensor([-1, 28, 28, 1])]}, "at least one"),
    "bytes element lies": (
        {
            "inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1]}],
            "raw_input_contents": [np.uint32(500).tobytes() + b"\x89PNG"],
        },
        "declares 500 bytes",
    ),
}


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
def test_grpc_crafted_bad_message_is_invalid_argument(grpc_target: str, case: str) -> None:
    fields, expected = BAD_MESSAGES[case]
    with pytest.raises(grpc.RpcError) as raised:
        send(grpc_target, crafted(**fields))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert expected in raised.value.details()


def test_grpc_typed_contents_are_read_like_raw_ones(grpc_target: str, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    pixels = (images[:2].astype(np.float32) / 255).ravel().tolist()
    response = send(grpc_target, crafted(inputs=[fp32_tensor([2, 28, 28, 1], fp32_contents=pixels)], id="typed"))
    assert response.id == "typed"  # type: ignore[attr-defined]
    digit_index = [output.name for output in response.outputs].index("digit")  # type: ignore[attr-defined]
    digits_out = np.frombuffer(response.raw_output_contents[digit_index], "<i8")  # type: ignore[attr-defined]
    assert (digits_out == labels[:2]).all()
