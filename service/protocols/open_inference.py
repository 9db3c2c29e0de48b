"""The Open Inference Protocol (KServe V2) for this service's models: the server's and a model's metadata, the
input tensors a model takes and how they become pixels or image files, and the output tensors it answers with.
Shared by its two transports, which only move these tensors on and off their wires: REST (v2_rest.py, with
Triton's binary tensor data extension) and gRPC (v2_grpc.py).

Every model takes one input per request, whichever of these suits the client:

    image        FP32   [-1, 28, 28, 1]   the SavedModel signature's own input: pixels in [0, 1], MNIST polarity
    image_uint8  UINT8  [-1, 28, 28, 1]   the same pixels as integers 0-255, as MNIST stores them
    image_bytes  BYTES  [-1]              encoded image files (PNG, JPEG, GIF, BMP, WEBP), one per element,
                                          normalised as /predict normalises files (parameter preprocess: "none"
                                          skips that for 28x28 MNIST-style files)

and answers, unless the request asks for fewer:

    probabilities  FP32   [-1, 10]   the softmax over the digits 0-9 (calibrated, for versions that are)
    digit          INT64  [-1]       the most probable digit
    digit_score    FP32   [-1]       how digit-like each image is: the share of MNIST validation digits less
                                     digit-like than it (versions with a digit check only)
    is_digit       BOOL   [-1]       digit_score at or above the version's threshold (the same versions)

What was followed: KServe's `docs/predict-api/v2/required_api.md` (endpoints, bodies, `data` nested or flat,
errors as {"error": msg}) and `grpc_predict_v2.proto`, and Triton's `docs/protocol/extension_binary_data.md`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from models.contract import INPUT_NAME, INPUT_SHAPE, OUTPUT_NAME, OUTPUT_SHAPE
from service.decoding import NamedFile
from service.digit_check import Classified
from service.errors import BatchTooLarge, InvalidRequest, InvalidShape, ServiceError, VersionNotFound
from service.payloads import decode_base64
from service.protocols.native import version_number
from service.registry import LoadedVersion, Registry, ServedModel, VersionState
from service.tensors import float_pixels, json_array, kind, shape_text, uint8_pixels

SERVER_NAME = "digit-serve"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ("binary_tensor_data",)
PLATFORM = "tensorflow_savedmodel"
DIGIT_OUTPUT = "digit"
DIGIT_SCORE_OUTPUT = "digit_score"
IS_DIGIT_OUTPUT = "is_digit"
# Outputs only a version with a digit check answers (its metadata lists them; others refuse them by name).
DIGIT_CHECK_OUTPUTS = (DIGIT_SCORE_OUTPUT, IS_DIGIT_OUTPUT)
PREPROCESS_PARAMETER = "preprocess"
# The service's statuses the protocol spells differently: a request it cannot use is "typically 400".
STATUSES = {415: 400, 422: 400}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.name} ({self.datatype} {shape_text(self.shape)})"

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


INPUTS = {
    spec.name: spec
    for spec in (
        TensorSpec(INPUT_NAME, "FP32", INPUT_SHAPE),
        TensorSpec(f"{INPUT_NAME}_uint8", "UINT8", INPUT_SHAPE),
        TensorSpec(f"{INPUT_NAME}_bytes", "BYTES", (-1,)),
    )
}
OUTPUTS = {
    spec.name: spec
    for spec in (
        TensorSpec(OUTPUT_NAME, "FP32", OUTPUT_SHAPE),
        TensorSpec(DIGIT_OUTPUT, "INT64", (-1,)),
        TensorSpec(DIGIT_SCORE_OUTPUT, "FP32", (-1,)),
        TensorSpec(IS_DIGIT_OUTPUT, "BOOL", (-1,)),
    )
}
INPUT_CHOICES = ", ".join(spec.describe() for spec in INPUTS.values())
BYTES_PER_ELEMENT = {"FP32": 4, "UINT8": 1, "INT64": 8}
WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype("<f4"),
    "UINT8": np.dtype("u1"),
    "INT64": np.dtype("<i8"),
    "BOOL": np.dtype("?"),
}


def error_body(error: ServiceError, request_id: str) -> tuple[int, Any]:
    """The protocol's error form: {"error": "<message>"}."""
    return STATUSES.get(error.status_code, error.status_code), {"error": error.message}


@dataclass
class InputTensor:
    """One input tensor as a transport received it: JSON `data`, or raw little-endian bytes (the binary extension,
    gRPC's raw_input_contents), or already-typed contents (gRPC's `contents`)."""

    name: str
    datatype: str
    shape: list[int]
    data: Any = None
    raw: bytes | None = None
    typed: Any = None  # gRPC contents: a sequence of numbers, or of bytes for BYTES

    def where(self) -> str:
        return f"input {self.name!r}"


@dataclass(frozen=True)
class Images:
    """What an input tensor carries: pixels the model reads as they are (uint8 or float32, (n, 28, 28)), or image
    files to decode and normalise."""

    pixels: np.ndarray | None = None
    files: list[NamedFile] | None = None


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}


def model_metadata(model: ServedModel, loaded: LoadedVersion | None) -> dict[str, Any]:
    """A model's metadata: its available versions (or only the one asked for), its inputs and outputs."""
    versions = [str(loaded.model.version)] if loaded else [str(status.version) for status in model.available()]
    return {
        "name": model.name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": [spec.metadata() for spec in INPUTS.values()],
        "outputs": [spec.metadata() for spec in outputs_of(loaded or _newest(model))],
    }


def outputs_of(loaded: LoadedVersion | None) -> list[TensorSpec]:
    """The outputs a version answers: the digit check's only when it has one."""
    has_check = loaded is not None and loaded.digit_check is not None
    return [spec for spec in OUTPUTS.values() if has_check or spec.name not in DIGIT_CHECK_OUTPUTS]


def _newest(model: ServedModel) -> LoadedVersion | None:
    available = model.available()
    return available[-1].loaded if available else None


def model_ready(registry: Registry, name: str, version: str | None) -> bool:
    """Whether a model (its newest version, or the one named) is AVAILABLE; ModelNotFound or VersionNotFound for
    one the server does not have."""
    model = registry.model(name)
    if version is None:
        return model.newest_available() is not None
    number = version_number(version)
    status = model.versions.get(number) if number is not None else None
    if status is None:
        raise VersionNotFound(f"model {name!r} has no version {version[:20]}; versions: {model.describe_versions()}")
    return status.state is VersionState.AVAILABLE


def read_input(tensors: list[InputTensor], *, max_images: int) -> Images:
    """The request's one input tensor → pixels or image files, or InvalidRequest saying what is wrong."""
    if len(tensors) != 1:
        given = ", ".join(repr(tensor.name) for tensor in tensors) or "none"
        raise InvalidRequest(f"send exactly one input tensor, one of {INPUT_CHOICES}; got {given}")
    tensor = tensors[0]
    spec = INPUTS.get(tensor.name)
    if spec is None:
        raise InvalidRequest(f"no input named {tensor.name[:64]!r}; the inputs are {INPUT_CHOICES}")
    if tensor.datatype != spec.datatype:
        other = next((other.name for other in INPUTS.values() if other.datatype == tensor.datatype), None)
        hint = f"; for {tensor.datatype} send input {other!r}" if other else ""
        raise InvalidRequest(
            f"{tensor.where()} is {spec.datatype}, got datatype {tensor.datatype[:16]!r}{hint}; the inputs are "
            f"{INPUT_CHOICES}"
        )
    _check_shape(tensor, spec, max_images)
    if spec.datatype == "BYTES":
        return Images(files=_files(tensor))
    values = _numbers(tensor, spec)
    if spec.datatype == "FP32":
        return Images(pixels=float_pixels(values, tensor.where())[..., 0])
    return Images(pixels=uint8_pixels(values, tensor.where())[..., 0])


def requested_outputs(names: list[str] | None, loaded: LoadedVersion) -> list[TensorSpec]:
    """The outputs a request asks for, in its order (all the version's when it names none)."""
    available = outputs_of(loaded)
    if not names:
        return available
    unknown = [name for name in names if name not in OUTPUTS]
    if unknown:
        choices = ", ".join(spec.describe() for spec in available)
        raise InvalidRequest(f"no output named {unknown[0][:64]!r}; the outputs are {choices}")
    missing = [name for name in names if OUTPUTS[name] not in available]
    if missing:
        raise InvalidRequest(
            f"{loaded.model.name} version {loaded.model.version} has no output {missing[0]!r}: it was exported "
            "without a digit check; ask for a version that has one, or drop that output"
        )
    if len(set(names)) != len(names):
        raise InvalidRequest("an output is requested twice; name each output once")
    return [OUTPUTS[name] for name in names]


def output_values(spec: TensorSpec, result: Classified) -> np.ndarray:
    """An output tensor's values for this result, in its wire dtype and shape."""
    if spec.name == DIGIT_OUTPUT:
        return result.probabilities.argmax(axis=1).astype(WIRE_DTYPES["INT64"])
    if spec.name == DIGIT_SCORE_OUTPUT:
        assert result.digit_scores is not None
        return result.digit_scores.astype(WIRE_DTYPES["FP32"])
    if spec.name == IS_DIGIT_OUTPUT:
        assert result.is_digit is not None
        return result.is_digit.astype(WIRE_DTYPES["BOOL"], copy=False)
    return result.probabilities.astype(WIRE_DTYPES["FP32"], copy=False)


def preprocess_option(parameters: dict[str, Any]) -> bool:
    value = parameters.get(PREPROCESS_PARAMETER, "mnist")
    if value not in ("mnist", "none"):
        raise InvalidRequest(f"parameter {PREPROCESS_PARAMETER} must be 'mnist' or 'none', got {str(value)[:40]!r}")
    return value == "mnist"


def _check_shape(tensor: InputTensor, spec: TensorSpec, max_images: int) -> None:
    shape = tensor.shape
    if len(shape) != len(spec.shape) or tuple(shape[1:]) != spec.shape[1:]:
        expected = f"{spec.describe()}: {len(spec.shape)} dimensions, the first the batch"
        raise InvalidShape(f"{tensor.where()} has shape {shape_text(shape)}; expected {expected}")
    if shape[0] < 1:
        raise InvalidShape(f"{tensor.where()} has shape {shape_text(shape)}: a batch of at least one is expected")
    if shape[0] > max_images:
        raise BatchTooLarge(f"{tensor.where()} holds {shape[0]} images; the limit is {max_images} per request")


def _numbers(tensor: InputTensor, spec: TensorSpec) -> np.ndarray:
    """A numeric tensor's values in its shape: from raw bytes, typed contents or JSON data (nested or flat)."""
    count = prod(tensor.shape)
    if tensor.raw is not None:
        needed = count * BYTES_PER_ELEMENT[spec.datatype]
        if len(tensor.raw) != needed:
            raise InvalidShape(
                f"{tensor.where()} has {len(tensor.raw):,} bytes of data; {spec.datatype} {shape_text(tensor.shape)} "
                f"takes {needed:,}"
            )
        return np.frombuffer(tensor.raw, dtype=WIRE_DTYPES[spec.datatype]).reshape(tensor.shape)
    if tensor.typed is not None:
        values = np.asarray(tensor.typed, dtype=np.float64 if spec.datatype == "FP32" else np.int64)
    elif tensor.data is not None:
        values = json_array(tensor.data, integers=spec.datatype == "UINT8", where=f"{tensor.where()} data")
    else:
        raise InvalidRequest(f"{tensor.where()} has no data; send `data`, or binary data with its binary_data_size")
    if values.size != count:
        raise InvalidShape(
            f"{tensor.where()} data holds {values.size:,} elements; its shape {shape_text(tensor.shape)} "
            f"needs {count:,}"
        )
    return values.reshape(tensor.shape)


def _files(tensor: InputTensor) -> list[NamedFile]:
    """A BYTES tensor's elements, each an image file: base64 strings in JSON, length-prefixed in raw bytes."""
    elements: list[bytes]
    if tensor.raw is not None:
        elements = unpack_bytes_elements(tensor.raw, tensor.where())
    elif tensor.typed is not None:
        elements = [bytes(element) for element in tensor.typed]
    elif isinstance(tensor.data, list):
        flat = _flatten(tensor.data)
        elements = [decode_base64(item, f"{tensor.where()} data[{index}]") for index, item in enumerate(flat)]
    else:
        raise InvalidRequest(
            f"{tensor.where()} data must be a list of base64 strings of image files; got {kind(tensor.data)}"
        )
    if len(elements) != tensor.shape[0]:
        raise InvalidShape(
            f"{tensor.where()} holds {len(elements)} elements; its shape {shape_text(tensor.shape)} needs "
            f"{tensor.shape[0]}"
        )
    return [NamedFile(element, f"{tensor.where()}[{index}]") for index, element in enumerate(elements)]


def unpack_bytes_elements(raw: bytes, where: str) -> list[bytes]:
    """BYTES elements as the binary extension lays them out: each a 4-byte little-endian length, then the bytes."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidRequest(f"{where}: {len(raw) - offset} stray bytes after element {len(elements) - 1}")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidRequest(
                f"{where}: element {len(elements)} declares {length:,} bytes but only {len(raw) - offset:,} follow"
            )
        elements.append(raw[offset : offset + length])
        offset += length
    return elements


def pack_bytes_elements(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def _flatten(data: list[Any]) -> list[Any]:
    """Nested lists' elements in order (a stack: JSON may nest deeper than Python recurses)."""
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            flat.append(item)
    return flat


_END = object()
