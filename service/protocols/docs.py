"""What /docs says about the protocol routes that read their bodies by hand: TF Serving's /v1 and the Open
Inference Protocol's infer (the /v2 GET routes are FastAPI routes that document themselves). Errors on these paths
are the protocols' own {"error": "<message>"}; only the connection limits (408, 414, 431) answer before a request
reaches a protocol, in the service's envelope.
"""

from __future__ import annotations

from typing import Any

from service.config import Settings
from service.protocols.schemas import (
    SEVEN_FLAT_UNIT,
    SEVEN_UNIT,
    ProtocolError,
    TFServingMetadata,
    TFServingModelStatus,
    TFServingPredictResponse,
    V2InferenceRequest,
    V2InferenceResponse,
)

PROTOCOL_PREFIXES = ("/v1/", "/v2")
PROTOCOL_ERROR_DESCRIPTIONS = {
    400: "The request cannot be used: the message says what is wrong and what is expected",
    404: "No such model, version or path",
    413: "The body is over the limit",
    500: "A fault of the server's: the log has the traceback",
    503: "Not ready, overloaded or shutting down (see Retry-After)",
    504: "The request waited past its deadline and was not run",
}
DOCUMENTED_MODELS: dict[str, Any] = {
    model.__name__: model
    for model in (
        ProtocolError,
        TFServingPredictResponse,
        TFServingModelStatus,
        TFServingMetadata,
        V2InferenceRequest,
        V2InferenceResponse,
    )
}
# TF Serving's URL grammar leaves no room for "/" or ":" in a model name or a label (http_rest_api_util.cc).
NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^/:]+$"}
MODEL = {"name": "model", "in": "path", "required": True, "schema": NAME_SCHEMA}
VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 10**18 - 1},
}
LABEL = {"name": "label", "in": "path", "required": True, "schema": NAME_SCHEMA}


def protocol_error_responses(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": PROTOCOL_ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ProtocolError"}}},
        }
        for status in statuses
    }


def _json_ok(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def protocol_operations(settings: Settings) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    limit = f"At most {settings.max_images_per_request} images per request, {settings.max_body_bytes:,} bytes of body."
    tfserving_tag = ["TensorFlow Serving REST API (/v1)"]
    for suffix, parameters in (
        ("", [MODEL]),
        ("/versions/{version}", [MODEL, VERSION]),
        ("/labels/{label}", [MODEL, LABEL]),
    ):
        base = "/v1/models/{model}" + suffix
        paths[base + ":predict"] = {
            "post": {
                "tags": tfserving_tag,
                "summary": "Predict, as TF Serving does" + (" (a version)" if "version" in suffix else ""),
                "description": 'Row format `{"instances": [...]}` → `{"predictions": [...]}`; columnar format '
                '`{"inputs": ...}` → `{"outputs": ...}`. Each instance is the signature\'s `image`: a float32 '
                '[28, 28, 1] list of pixels in [0, 1], white digit on black. `"signature_name": "digit_check"` '
                "(versions exported with a digit check) answers the probabilities and the raw `score` per instance, "
                "as TF Serving answers a signature of several outputs. " + limit,
                "operationId": "tfserving_predict" + suffix.replace("/", "_").replace("{", "").replace("}", ""),
                "parameters": parameters,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/TFServingPredictRequest"},
                            "examples": {
                                "row": {"summary": "row format", "value": {"instances": [SEVEN_UNIT]}},
                                "columnar": {
                                    "summary": "columnar format",
                                    "value": {"inputs": {"image": [SEVEN_UNIT]}},
                                },
                            },
                        }
                    },
                },
                "responses": {
                    "200": _json_ok("TFServingPredictResponse", "The probabilities of the digits 0-9, per instance"),
                    **protocol_error_responses(400, 404, 413, 503, 504, 500),
                },
            }
        }
        paths[base] = {
            "get": {
                "tags": tfserving_tag,
                "summary": "Model version status, as TF Serving gives it",
                "operationId": "tfserving_status" + suffix.replace("/", "_").replace("{", "").replace("}", ""),
                "parameters": parameters,
                "responses": {
                    "200": _json_ok("TFServingModelStatus", "Each version's state, newest first"),
                    **protocol_error_responses(400, 404, 503, 500),
                },
            }
        }
        paths[base + "/metadata"] = {
            "get": {
                "tags": tfserving_tag,
                "summary": "Model metadata: the signature_def map, as TF Serving gives it",
                "operationId": "tfserving_metadata" + suffix.replace("/", "_").replace("{", "").replace("}", ""),
                "parameters": parameters,
                "responses": {
                    "200": _json_ok("TFServingMetadata", "The model spec and its signatures"),
                    **protocol_error_responses(400, 404, 503, 500),
                },
            }
        }
    for suffix, parameters in (("", [MODEL]), ("/versions/{version}", [MODEL, VERSION])):
        paths["/v2/models/{model}" + suffix + "/infer"] = {
            "post": {
                "tags": ["Open Inference Protocol (KServe V2)"],
                "summary": "Infer" + (" (a version)" if suffix else ""),
                "description": "One input tensor, one of `image` (FP32 [n, 28, 28, 1] in [0, 1]), `image_uint8` "
                "(UINT8 [n, 28, 28, 1], 0-255) or `image_bytes` (BYTES [n]: image files, base64 in JSON); `data` "
                "nested or flat. Outputs `probabilities` (FP32 [n, 10]) and `digit` (INT64 [n]), and on versions "
                "exported with a digit check `digit_score` (FP32 [n]: the share of MNIST validation digits less "
                "digit-like than each image) and `is_digit` (BOOL [n]). Triton's binary "
                "tensor data extension: put `parameters.binary_data_size` on an input and its raw little-endian "
                "bytes after the JSON, whose length goes in the `Inference-Header-Content-Length` header; ask for "
                "binary outputs with `binary_data` (per output) or `binary_data_output` (all). The Content-Type "
                "is not looked at. " + limit,
                "operationId": "v2_infer" + ("_version" if suffix else ""),
                "parameters": [
                    *parameters,
                    {
                        "name": "Inference-Header-Content-Length",
                        "in": "header",
                        "required": False,
                        "description": "With binary data: the length of the JSON at the start of the body",
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/V2InferenceRequest"},
                            "examples": {
                                "fp32": {
                                    "summary": "one image, FP32, flat data",
                                    "value": {
                                        "id": "request-1",
                                        "inputs": [
                                            {
                                                "name": "image",
                                                "shape": [1, 28, 28, 1],
                                                "datatype": "FP32",
                                                "data": SEVEN_FLAT_UNIT,
                                            }
                                        ],
                                    },
                                },
                            },
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The outputs, as JSON data or binary data after the JSON",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/V2InferenceResponse"}},
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    **protocol_error_responses(400, 404, 413, 503, 504, 500),
                },
            }
        }
    return paths
