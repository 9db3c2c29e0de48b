"""The HTTP surface: /predict, /model/summary and the health probes. Routes only await: decoding and inference
run off the event loop (see inputs.py and batching.py).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import PlainTextResponse, Response

from service.batching import ClientGone
from service.encoding import json_response
from service.errors import InvalidRequest, ModelNotReady, envelope, request_id_of
from service.inputs import Reading, read_images
from service.openapi import error_responses
from service.schemas import HealthResponse, ModelSummary, ProbeResponse
from service.serving import ServingState
from service.summary import model_summary, summary_text

router = APIRouter()
PREPROCESS_OPTIONS = ("mnist", "none")
CLIENT_CLOSED_REQUEST = 499


async def get_serving(request: Request) -> ServingState:
    """The lifespan's serving state; 503 until the model is loaded and warmed up (async: no threadpool hop)."""
    serving: ServingState | None = getattr(request.state, "serving", None)
    if serving is None or not serving.ready:
        raise ModelNotReady("the model is not loaded yet; retry when /health/ready answers 200")
    return serving


ServingDep = Annotated[ServingState, Depends(get_serving)]


async def predict(request: Request) -> Response:
    """POST /predict: the hot path, mounted as a plain Starlette route.

    FastAPI's per-request dependency and parameter solving cost ~50 µs here, about 40% of the whole path
    (measured in-process), so this route reads its state and its one query parameter itself; its OpenAPI
    description is written out in openapi.py.
    """
    serving = await get_serving(request)
    reading = Reading(serving.settings, _preprocess_option(request), serving.decode_limiter)
    images = await read_images(request, reading)
    try:
        probabilities = await serving.batcher.classify(images, request.is_disconnected)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)  # nobody reads it; nginx's code for the case
    return json_response(prediction_body(probabilities, serving.model_info(), request_id_of(request)))


def _preprocess_option(request: Request) -> bool:
    value = request.query_params.get("preprocess", "mnist")
    if value not in PREPROCESS_OPTIONS:
        raise InvalidRequest(
            f"query parameter preprocess must be 'mnist' or 'none', got {value[:40]!r}",
            details={"location": ["query", "preprocess"]},
        )
    return value == "mnist"


def prediction_body(probabilities: np.ndarray, model: dict[str, Any], request_id: str) -> dict[str, Any]:
    digits = probabilities.argmax(axis=1)
    confidences = probabilities[np.arange(len(digits)), digits]
    predictions = [
        {"digit": int(digit), "confidence": confidence, "probabilities": row}
        for digit, confidence, row in zip(digits, confidences, probabilities, strict=True)
    ]
    return {"predictions": predictions, "model": model, "request_id": request_id}


@router.get(
    "/model/summary",
    summary="The served model's layers, parameter counts, signature and test metrics",
    response_model=ModelSummary,
    responses={200: {"content": {"text/plain": {"example": 'Model: "mnist_convnet" version 1 ...'}}}},
)
async def summary(
    serving: ServingDep,
    format: Annotated[Literal["json", "text"], Query(description="`text`: the Keras-style table")] = "json",
) -> Response:
    body = model_summary(serving.model)
    if format == "text":
        return PlainTextResponse(summary_text(body))
    return json_response(body)


@router.get(
    "/health",
    summary="Status of the server and its model (503 until ready)",
    response_model=HealthResponse,
    responses=error_responses(503),
)
async def health(request: Request) -> Response:
    serving: ServingState | None = getattr(request.state, "serving", None)
    ready = _is_ready(serving)
    body: dict[str, Any] = {
        "status": "ok" if ready else "unavailable",
        "ready": ready,
        "model": serving.model_info() if serving else None,
        "runtime": serving.runtime_name if serving else None,
        "uptime_seconds": round(time.monotonic() - serving.started_at, 1) if serving else 0.0,
        "replica": request.state.replica,
    }
    if ready:
        return json_response(body)
    return json_response(body | _not_ready_envelope(request), status_code=503)


@router.get("/health/live", summary="Liveness: the process answers", response_model=ProbeResponse)
async def live() -> Response:
    return json_response({"status": "alive"})


@router.get(
    "/health/ready",
    summary="Readiness: the model is loaded and warmed up",
    response_model=ProbeResponse,
    responses=error_responses(503),
)
async def ready(request: Request) -> Response:
    if _is_ready(getattr(request.state, "serving", None)):
        return json_response({"status": "ready"})
    return json_response(_not_ready_envelope(request), status_code=503)


def _is_ready(serving: ServingState | None) -> bool:
    return serving is not None and serving.ready


def _not_ready_envelope(request: Request) -> dict[str, Any]:
    return envelope(ModelNotReady("the model is not loaded and warmed up yet"), request_id_of(request))
