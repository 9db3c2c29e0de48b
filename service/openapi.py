"""What /docs and /openapi.json say about the parts the routes read by hand: /predict's four body forms and the
error envelope.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from service.schemas import SEVEN, ErrorEnvelope, PredictJsonRequest, PredictResponse

IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}

PREDICT_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": (
        "One of: a JSON body with `image` / `images` (28x28 integer pixels 0-255, white on black, used as is) or "
        "`image_b64` / `images_b64` (base64 image files); a multipart form with one or more files in fields "
        "named `file`; or the raw bytes of one PNG, JPEG, GIF, BMP or WEBP file. Image files are normalised "
        "the way MNIST was made unless `?preprocess=none`."
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
                "file": {"summary": "a base64 PNG", "value": {"image_b64": "iVBORw0KGgoAAAANSUhEUg..."}},
                "files": {"summary": "several base64 files", "value": {"images_b64": ["iVBORw0...", "/9j/4AAQ..."]}},
            },
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                "required": ["file"],
            },
            "encoding": {"file": {"contentType": "image/png, image/jpeg, image/gif, image/bmp, image/webp"}},
        },
        "image/png": IMAGE_BODY,
        "image/jpeg": IMAGE_BODY,
        "image/gif": IMAGE_BODY,
        "image/bmp": IMAGE_BODY,
        "image/webp": IMAGE_BODY,
    },
}

ERROR_DESCRIPTIONS = {
    400: "The body is not valid JSON, or the multipart form is malformed",
    413: "The body, or an image's declared pixel count, is over the limit",
    415: "Unsupported Content-Type",
    422: "The content is not usable: wrong shape, bad pixels, not an image, bad base64, empty or oversized batch",
    503: "The model is not ready, or the queue is full (see Retry-After)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": ERROR_DESCRIPTIONS[status], "model": ErrorEnvelope} for status in statuses}


PREDICT_OPERATION: dict[str, Any] = {
    "summary": "Classify one or more digit images",
    "description": "Send images as JSON pixel arrays, base64 files, multipart uploads (field `file`), or a raw "
    "image body. The response holds one prediction per image, in the order sent.",
    "operationId": "predict",
    "parameters": [
        {
            "name": "preprocess",
            "in": "query",
            "required": False,
            "description": "`mnist` (default): normalise image files the way MNIST was made; `none`: the files "
            "already are 28x28 MNIST-style images. JSON pixel arrays are never changed.",
            "schema": {"type": "string", "enum": ["mnist", "none"], "default": "mnist"},
        }
    ],
    "requestBody": PREDICT_REQUEST_BODY,
    "responses": {
        "200": {
            "description": "One prediction per image",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}},
        },
        **{
            str(status): {
                "description": ERROR_DESCRIPTIONS[status],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
            }
            for status in (400, 413, 415, 422, 503)
        },
    },
}
DOCUMENTED_MODELS: dict[str, Any] = {
    "PredictJsonRequest": PredictJsonRequest,
    "PredictResponse": PredictResponse,
    "ErrorEnvelope": ErrorEnvelope,
}


def install_openapi(app: FastAPI) -> None:
    """Generate the schema once, adding /predict: a plain Starlette route that parses its body by hand."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in DOCUMENTED_MODELS.items():
                model_schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[name] = model_schema
            schema["paths"] = {"/predict": {"post": PREDICT_OPERATION}} | schema["paths"]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
