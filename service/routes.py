"""The HTTP surface: /predict, /model/summary and the health probes. Routes only await: decoding and inference
run off the event loop (see inputs.py and batching.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import PlainTextResponse, Response

from service.admission import LARGE_BODY_BYTES, Deadline
from service.encoding import json_response
from service.errors import InvalidRequest, ModelNotReady, Overloaded, ServiceError, envelope, request_id_of
from service.inputs import Reading, images_in_body, read_images
from service.middleware import arrival_time, client_timeout, declared_body_bytes
from service.openapi import error_responses
from service.registry import LoadedVersion
from service.schemas import HealthResponse, ModelsResponse, ModelSummary, ProbeResponse
from service.serving import ServingState
from service.summary import model_summary, summary_text

router = APIRouter()
PREPROCESS_OPTIONS = ("mnist", "none")
PREDICT_PATHS = ("/predict", "/models/{model}/predict", "/models/{model}/versions/{version}/predict")
# Long enough to bound that reading to a fraction of a core (64 clients resending 476 KB batches: goodput 0.29x of
# 4 clients' without a pause, 0.79x with it; 0.25 s measured no better), short beside Retry-After.
REFUSAL_PAUSE_SECONDS = 0.05


async def get_serving(request: Request) -> ServingState:
    """The lifespan's serving state; 503 until the model is loaded and warmed up (async: no threadpool hop)."""
    serving: ServingState | None = getattr(request.state, "serving", None)
    if serving is None or not serving.is_ready:
        raise _not_ready(serving)
    return serving


ServingDep = Annotated[ServingState, Depends(get_serving)]


async def predict(request: Request) -> Response:
    """POST /predict: the hot path, mounted as a plain Starlette route.

    FastAPI's per-request dependency and parameter solving cost ~50 µs here, about 40% of the whole path
    (measured in-process), so this route reads its state and its one query parameter itself; its OpenAPI
    description is written out in openapi.py.
    """
    serving = await get_serving(request)
    settings = serving.settings
    scope = request.scope
    version = chosen_version(serving, request) if scope["query_string"] or scope["path_params"] else serving.default
    if version is None:
        raise _not_ready(serving)
    deadline = Deadline.for_request(arrival_time(scope), settings.request_timeout_ms, client_timeout(scope))
    declared_bytes = declared_body_bytes(scope)
    try:
        ticket = serving.admission.admit(declared_bytes)
    except Overloaded:
        await _pause_if_large(declared_bytes)
        raise
    with ticket, version.lease():
        reading = Reading(settings.max_images_per_request, _preprocess_option(request), serving.decode_pool, deadline)
        if declared_bytes is None or declared_bytes > LARGE_BODY_BYTES:
            # Counted from its bytes before it is parsed or decoded, while refusing is still cheap.
            body = await request.body()  # read_images reads it again from memory
            ticket.hold(images_in_body(body, request.headers.get("content-type", ""), settings.max_images_per_request))
        images = await read_images(request, reading)
        ticket.hold(len(images))
        probabilities = await version.batcher.classify(images, request.is_disconnected, deadline)
    return json_response(prediction_body(probabilities, version.info(), request_id_of(request)))


def chosen_version(serving: ServingState, request: Request) -> LoadedVersion:
    """The version a request names: in its path (/models/{name}[/versions/{version}]/predict) or its query
    (?model=&version= or &label=); whatever it leaves out is the default model and its newest version."""
    path = request.path_params
    query = request.query_params
    for key in ("model", "version", "label"):
        if key in path and key in query:
            raise InvalidRequest(
                f"the {key} is named in the path; drop the query parameter {key}",
                details={"location": ["query", key]},
            )
    name = path.get("model", query.get("model"))
    label = path.get("label", query.get("label"))
    version = _version_number(path.get("version", query.get("version")))
    return serving.registry.resolve(name, version, label)


def _version_number(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1 or len(text) > 18:
        raise InvalidRequest(
            f"version must be a positive integer, got {text[:40]!r}", details={"location": ["query", "version"]}
        )
    return int(text)


async def _pause_if_large(declared_bytes: int | None) -> None:
    """A refused request whose body is large is answered after a pause: its body must still be read (to keep the
    connection), and a client that resends at once (wrk does; real clients wait for Retry-After) would otherwise
    make the server read hundreds of megabytes a second of bodies it refuses, starving the work it admitted."""
    if declared_bytes is None or declared_bytes > LARGE_BODY_BYTES:
        await asyncio.sleep(REFUSAL_PAUSE_SECONDS)


def _preprocess_option(request: Request) -> bool:
    if not request.scope["query_string"]:
        return True  # the usual case, without building the query parameters
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
    responses={
        200: {"content": {"text/plain": {"example": 'Model: "mnist_convnet" version 1 ...'}}},
        **error_responses(404, 503),
    },
)
async def summary(
    request: Request,
    serving: ServingDep,
    format: Annotated[Literal["json", "text"], Query(description="`text`: the Keras-style table")] = "json",
    model: Annotated[str | None, Query(description="The model (default: the default model)", max_length=256)] = None,
    version: Annotated[int | None, Query(description="The version (default: the newest available)", ge=1)] = None,
    label: Annotated[str | None, Query(description="A version label from serving.toml", max_length=256)] = None,
) -> Response:
    body = model_summary(serving.registry.resolve(model, version, label).model)
    if format == "text":
        return PlainTextResponse(summary_text(body))
    return json_response(body)


@router.get(
    "/models",
    summary="Every model of the repository: default flag, policy, labels, and each version's state",
    response_model=ModelsResponse,
    responses=error_responses(503),
)
async def models(serving: ServingDep) -> Response:
    return json_response(serving.registry.describe())


@router.get(
    "/health",
    summary="Status of the server and its model (503 until ready)",
    response_model=HealthResponse,
    responses=error_responses(503),
)
async def health(request: Request) -> Response:
    serving: ServingState | None = getattr(request.state, "serving", None)
    ready = serving is not None and serving.is_ready
    body: dict[str, Any] = {
        "status": "ok" if ready else "unavailable",
        "ready": ready,
        "model": serving.default.info() if serving and serving.default else None,
        "runtime": serving.default.runtime_name if serving and serving.default else None,
        "uptime_seconds": round(time.monotonic() - serving.started_at, 1) if serving else 0.0,
        "replica": request.state.replica,
    }
    if ready:
        return json_response(body)
    return json_response(body | envelope(_not_ready(serving), request_id_of(request)), status_code=503)


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
    serving: ServingState | None = getattr(request.state, "serving", None)
    if serving is not None and serving.is_ready:
        return json_response({"status": "ready"})
    return json_response(envelope(_not_ready(serving), request_id_of(request)), status_code=503)


def _not_ready(serving: ServingState | None) -> ServiceError:
    stopped = serving.unavailable() if serving is not None else None
    if stopped is not None:
        return stopped
    return ModelNotReady("the model is not loaded and warmed up yet; retry when /health/ready answers 200")
