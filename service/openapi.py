"""What /docs and /openapi.json say about the parts the routes read by hand: /predict's four body forms, its limits
(from the settings the app runs with), and the error envelope on every operation.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from PIL import Image
from pydantic import TypeAdapter

from service.config import Settings
from service.protocols import docs as protocol_docs
from service.protocols.schemas import tfserving_predict_request_schema
from service.schemas import SEVEN, ErrorEnvelope, PredictJsonRequest, PredictResponse

IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
IMAGE_TYPES_TEXT = "image/png, image/jpeg, image/gif, image/bmp, image/webp"

ERROR_DESCRIPTIONS = {
    400: "The body is not valid JSON, or the multipart form is malformed",
    404: "No such path, or no such model, version or label (model_not_found, version_not_found)",
    408: "The request's headers or body arrived too slowly (the connection is closed)",
    413: "The body, an image's declared pixel count, or a request's total pixel count is over the limit",
    414: "The URL is too long (the connection is closed)",
    415: "Unsupported Content-Type",
    422: "The content is not usable: wrong shape, bad pixels, not an image, bad base64, empty or oversized batch, "
    "or a bad query parameter or header; with ?reject=not_digit, an image that is not a digit (not_a_digit)",
    431: "The request line and headers are too large (the connection is closed)",
    500: "A fault of the server's: the log has the traceback, the body the request id",
    501: "The version or runtime cannot do what was asked (not_supported), e.g. feature maps on LiteRT",
    503: "Not ready; overloaded, shutting down or out of memory (see Retry-After)",
    504: "The request waited past its deadline and was not run",
}
# Any operation can meet these: the connection limits and a fault of ours.
EVERY_OPERATION_ERRORS = (408, 414, 431, 500)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": ERROR_DESCRIPTIONS[status], "model": ErrorEnvelope} for status in statuses}


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }


def _example_file(image_format: str) -> str:
    """The base64 of a real file of the example seven, dark on light as a scan or a drawing app would send it."""
    buffer = io.BytesIO()
    drawing = Image.fromarray(255 - np.array(SEVEN, dtype=np.uint8)).resize((112, 112), Image.Resampling.BICUBIC)
    drawing.save(buffer, format=image_format)
    return base64.b64encode(buffer.getvalue()).decode()


SELECTION_PARAMETERS = {
    "model": "The model (default: the default model, see GET /models)",
    "version": "The version of the model (default: its newest available version)",
    "label": "A version label from serving.toml (`stable`, `canary`), instead of a version",
}
PREDICT_SELECTION = {
    "/predict": {"model": "query", "version": "query", "label": "query"},
    "/models/{model}/predict": {"model": "path", "label": "query"},
    "/models/{model}/versions/{version}/predict": {"model": "path", "version": "path"},
}


def _selection_parameters(where: dict[str, str]) -> list[dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {
        "model": {"type": "string", "minLength": 1, "maxLength": 256},
        "version": {"type": "integer", "minimum": 1, "maximum": 10**18 - 1},
        "label": {"type": "string", "minLength": 1, "maxLength": 256},
    }
    return [
        {
            "name": name,
            "in": location,
            "required": location == "path",
            "description": SELECTION_PARAMETERS[name],
            "schema": schemas[name],
        }
        for name, location in where.items()
    ]


def predict_operations(settings: Settings) -> dict[str, Any]:
    """/predict and its two path forms: one operation each, the same body."""
    operations = {}
    for path, where in PREDICT_SELECTION.items():
        operation = predict_operation(settings)
        operation["parameters"] = _selection_parameters(where) + operation["parameters"]
        if path != "/predict":
            operation["operationId"] = "predict_" + "_".join(where)
            operation["summary"] += " with a chosen model" + (" version" if "version" in where else "")
        operations[path] = {"post": operation}
    return operations


def predict_operation(settings: Settings) -> dict[str, Any]:
    png, jpeg = _example_file("PNG"), _example_file("JPEG")
    limits = (
        f"At most {settings.max_images_per_request} images per request and {settings.max_body_bytes:,} bytes of "
        f"body; each image file at most {settings.max_image_pixels:,} pixels and all of a request's files "
        f"{settings.max_request_pixels:,} pixels in all (width x height, from their headers)."
    )
    return {
        "summary": "Classify one or more digit images",
        "description": "Send images as JSON pixel arrays, base64 files, multipart uploads (field `file`), or a raw "
        "image body. The response holds one prediction per image, in the order sent, with `is_digit` and "
        "`digit_score` (null for a version exported without a digit check). " + limits,
        "operationId": "predict",
        "parameters": [
            {
                "name": "preprocess",
                "in": "query",
                "required": False,
                "description": "`mnist` (default): normalise image files the way MNIST was made; `none`: the files "
                "already are 28x28 MNIST-style images. JSON pixel arrays are never changed.",
                "schema": {"type": "string", "enum": ["mnist", "none"], "default": "mnist"},
            },
            {
                "name": "include",
                "in": "query",
                "required": False,
                "description": "Add to each prediction what the model saw: `input`, the normalised 28x28 image as a "
                "base64 PNG; `feature_maps` (one image per request, else 422), each convolution's and pooling "
                "layer's output, quantised to a byte per value and scaled per channel (`scale`), base64 in "
                "(height, width, channels) order. Repeat the parameter or separate values with commas. A runtime "
                "without feature maps (litert, onnx) answers 501 `not_supported`.",
                "schema": {"type": "array", "items": {"type": "string", "enum": ["input", "feature_maps"]}},
                "style": "form",
                "explode": True,
            },
            {
                "name": "reject",
                "in": "query",
                "required": False,
                "description": "`not_digit`: answer 422 `not_a_digit` (naming each image that is not a digit and its "
                "`digit_score`) instead of predictions when any image does not look like a digit. A version "
                "exported without a digit check answers 501 `not_supported`.",
                "schema": {"type": "string", "enum": ["not_digit"]},
            },
            {
                "name": "X-Request-Timeout-Ms",
                "in": "header",
                "required": False,
                "description": "Give up on the request (504 `deadline_exceeded`) if it has not reached the model "
                f"within this many milliseconds; the server's own limit ({settings.request_timeout_ms:g} ms, "
                "0 = none) still applies.",
                "schema": {"type": "number", "exclusiveMinimum": 0},
            },
        ],
        "requestBody": {
            "required": True,
            "description": (
                "One of: a JSON body with `image` / `images` (28x28 integer pixels 0-255, white on black, used as is) "
                "or `image_b64` / `images_b64` (base64 image files); a multipart form with one or more files in "
                "fields named `file`; or the raw bytes of one PNG, JPEG, GIF, BMP or WEBP file. Image files are "
                "normalised the way MNIST was made unless `?preprocess=none`. " + limits
            ),
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/PredictJsonRequest"},
                    "examples": {
                        "pixels": {"summary": "one 28x28 image", "value": {"image": SEVEN}},
                        "flat": {
                            "summary": "one image as 784 flat pixels",
                            "value": {"image": [pixel for row in SEVEN for pixel in row]},
                        },
                        "batch": {"summary": "several images", "value": {"images": [SEVEN, SEVEN]}},
                        "file": {"summary": "a base64 PNG", "value": {"image_b64": png}},
                        "data_url": {
                            "summary": "a data: URL, as canvas.toDataURL() makes it",
                            "value": {"image_b64": "data:image/png;base64," + png},
                        },
                        "files": {"summary": "several base64 files", "value": {"images_b64": [png, jpeg]}},
                    },
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "minItems": 1,
                                "maxItems": settings.max_images_per_request,
                            }
                        },
                        "required": ["file"],
                    },
                    "encoding": {"file": {"contentType": IMAGE_TYPES_TEXT}},
                },
                **dict.fromkeys(("image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp"), IMAGE_BODY),
            },
        },
        "responses": {
            "200": {
                "description": "One prediction per image",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}},
            },
            **{str(status): _error_response(status) for status in (400, 404, 413, 415, 422, 501, 503, 504)},
        },
    }


DOCUMENTED_MODELS: dict[str, Any] = {
    "PredictJsonRequest": PredictJsonRequest,
    "PredictResponse": PredictResponse,
    "ErrorEnvelope": ErrorEnvelope,
}


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Generate the schema once, adding /predict (a plain Starlette route that parses its body by hand), the batch
    limits of these settings, and the errors every operation can meet."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in (DOCUMENTED_MODELS | protocol_docs.DOCUMENTED_MODELS).items():
                model_schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[name] = model_schema
            components["TFServingPredictRequest"] = tfserving_predict_request_schema(settings.max_images_per_request)
            for batch_form, field in (("PixelsBatchRequest", "images"), ("FileBatchRequest", "images_b64")):
                components[batch_form]["properties"][field]["maxItems"] = settings.max_images_per_request
            schema["paths"] = (
                predict_operations(settings) | protocol_docs.protocol_operations(settings) | schema["paths"]
            )
            for path, operations in schema["paths"].items():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    if path.startswith(protocol_docs.PROTOCOL_PREFIXES):
                        # The protocols answer in their own error form, and a request they cannot use is a 400.
                        responses.pop("422", None)
                        for code, response in protocol_docs.protocol_error_responses(400, 500).items():
                            responses.setdefault(code, response)
                    elif "422" in responses:  # FastAPI documents its own validation body; ours is the envelope
                        responses["422"] = _error_response(422)
                    for status in EVERY_OPERATION_ERRORS:
                        responses.setdefault(str(status), _error_response(status))
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
