"""The standard protocols' request and response bodies, as pydantic models: they document /v1 and /v2 in /docs,
and tests validate real responses against them. The adapters build the same shapes directly (orjson), as the
native /predict does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas import SEVEN

SEVEN_UNIT: Any = [[[round(pixel / 255, 4)] for pixel in row] for row in SEVEN]  # [28, 28, 1] floats in [0, 1]
SEVEN_FLAT_UNIT: Any = [round(pixel / 255, 4) for row in SEVEN for pixel in row]
EXAMPLE_PROBABILITIES: Any = [0.0, 0.0, 0.0001, 0.0003, 0.0, 0.0, 0.0, 0.998, 0.0, 0.0016]


class ProtocolError(BaseModel):
    """TF Serving's and the Open Inference Protocol's error form."""

    error: str = Field(examples=["Servable not found for request: Latest(mnist)"])


# -- TF Serving (/v1) ---------------------------------------------------------------------------------------------


def tfserving_predict_request_schema(max_images: int) -> dict[str, Any]:
    """The JSON Schema of a predict body, as precise as the server is: row format (`instances`: [28, 28, 1] lists,
    bare or as {"image": ...}) or columnar format (`inputs`: the [n, 28, 28, 1] tensor, bare or {"image": ...}),
    never both; pixels in [0, 1]. Written by hand: the union needs `oneOf` and `not`, which pydantic does not emit."""
    pixel = {"type": "number", "minimum": 0, "maximum": 1}
    channel = {"type": "array", "items": pixel, "minItems": 1, "maxItems": 1}
    row = {"type": "array", "items": channel, "minItems": 28, "maxItems": 28}
    instance = {"type": "array", "items": row, "minItems": 28, "maxItems": 28}
    batch = {"type": "array", "items": instance, "minItems": 1, "maxItems": max_images}
    named_instance = {
        "type": "object",
        "properties": {"image": instance},
        "required": ["image"],
        "additionalProperties": False,
    }
    named_batch = {"type": "object", "properties": {"image": batch}, "required": ["image"]}
    signature = {
        "type": "string",
        "enum": ["serving_default", "", "digit_check"],
        "description": "serving_default (the probabilities); digit_check, on versions exported with a digit check: "
        "the probabilities and the raw `score` (higher = more digit-like; its card maps it to digit_score)",
    }
    row_format = {
        "type": "object",
        "properties": {
            "signature_name": signature,
            "instances": {
                "oneOf": [batch, {"type": "array", "items": named_instance, "minItems": 1, "maxItems": max_images}]
            },
        },
        "required": ["instances"],
        "not": {"required": ["inputs"]},
    }
    columnar_format = {
        "type": "object",
        "properties": {"signature_name": signature, "inputs": {"oneOf": [batch, named_batch]}},
        "required": ["inputs"],
        "not": {"required": ["instances"]},
    }
    return {
        "title": "TFServingPredictRequest",
        "description": "Row format or columnar format; pixels in [0, 1], white digit on black.",
        "oneOf": [row_format, columnar_format],
        "examples": [{"instances": [SEVEN_UNIT]}],
    }


class TFServingPredictResponse(BaseModel):
    """`predictions` (row format): one list of 10 probabilities per instance; `outputs` (columnar): the [n, 10]
    tensor. With the digit_check signature, as TF Serving answers a signature of several outputs: one
    {"probabilities": [...], "score": s} per instance, or {"probabilities": [[...]], "score": [...]}."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"predictions": [EXAMPLE_PROBABILITIES]}]})

    predictions: list[list[float]] | list[dict[str, Any]] | None = None
    outputs: list[list[float]] | dict[str, Any] | None = None


class TFServingStatus(BaseModel):
    error_code: str = Field(examples=["OK"])
    error_message: str = Field(examples=[""])


class TFServingVersionStatus(BaseModel):
    version: str = Field(examples=["1"])
    state: Literal["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]
    status: TFServingStatus


class TFServingModelStatus(BaseModel):
    model_version_status: list[TFServingVersionStatus]


class TFServingModelSpec(BaseModel):
    name: str = Field(examples=["mnist_convnet"])
    signature_name: str = Field(examples=[""])
    version: str = Field(examples=["1"])


class TFServingMetadata(BaseModel):
    model_spec: TFServingModelSpec
    metadata: dict[str, Any] = Field(description='{"signature_def": {"signature_def": {...}}}, TF Serving\'s JSON')


# -- Open Inference Protocol (/v2) --------------------------------------------------------------------------------


class V2ServerMetadata(BaseModel):
    name: str = Field(examples=["digit-serve"])
    version: str = Field(examples=["0.1.0"])
    extensions: list[str] = Field(examples=[["binary_tensor_data"]])


class V2ServerLive(BaseModel):
    live: bool


class V2ServerReady(BaseModel):
    ready: bool


class V2ModelReady(BaseModel):
    name: str
    ready: bool


class V2TensorMetadata(BaseModel):
    name: str = Field(examples=["image"])
    datatype: str = Field(examples=["FP32"])
    shape: list[int] = Field(examples=[[-1, 28, 28, 1]])


class V2ModelMetadata(BaseModel):
    name: str = Field(examples=["mnist_convnet"])
    versions: list[str] = Field(examples=[["1"]])
    platform: str = Field(examples=["tensorflow_savedmodel"])
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2RequestInput(BaseModel):
    name: Literal["image", "image_uint8", "image_bytes"]
    shape: list[int] = Field(examples=[[1, 784]])
    datatype: Literal["FP32", "UINT8", "BYTES"]
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size: the input's bytes after the JSON")
    data: list[Any] | None = Field(None, description="Nested or flat; BYTES elements as base64 strings")


class V2RequestOutput(BaseModel):
    name: Literal["probabilities", "digit", "digit_score", "is_digit"] = Field(
        description="digit_score and is_digit: versions exported with a digit check only"
    )
    parameters: dict[str, Any] | None = Field(None, description="binary_data: true to receive it as binary data")


class V2InferenceRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "request-1",
                    "inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": SEVEN_FLAT_UNIT}],
                    "outputs": [{"name": "digit"}, {"name": "probabilities"}],
                }
            ]
        }
    )

    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description='binary_data_output: all outputs as binary data; preprocess: "mnist" or "none"'
    )
    inputs: list[V2RequestInput] = Field(min_length=1, max_length=1)
    outputs: list[V2RequestOutput] | None = None


class V2ResponseOutput(BaseModel):
    name: str = Field(examples=["digit"])
    shape: list[int] = Field(examples=[[1]])
    datatype: str = Field(examples=["INT64"])
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(None, examples=[[7]])


class V2InferenceResponse(BaseModel):
    model_name: str = Field(examples=["mnist_convnet"])
    model_version: str = Field(examples=["1"])
    id: str | None = None
    outputs: list[V2ResponseOutput]
