"""The service's own resources: /model/summary, /models and the health probes. Inference has its own modules,
one per protocol (service/protocols/).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import PlainTextResponse, Response

from service.dependencies import ServingDep, not_ready
from service.encoding import json_response
from service.errors import NotFound, envelope, request_id_of
from service.metrics import Metrics
from service.openapi import error_responses
from service.schemas import HealthResponse, ModelsResponse, ModelSummary, ProbeResponse
from service.serving import ServingState
from service.summary import model_summary, summary_text

router = APIRouter()


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
    body = model_summary(serving.registry.resolve(model, version, label))
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
    return json_response(body | envelope(not_ready(serving), request_id_of(request)), status_code=503)


@router.get(
    "/metrics",
    summary="Prometheus metrics: requests, queue wait apart from compute, batches, model versions, the process",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The exposition format"},
        **error_responses(404),
    },
)
async def metrics(request: Request) -> Response:
    registry_owner: Metrics | None = request.scope["state"].get("metrics")
    if registry_owner is None:
        raise NotFound("metrics are off (DIGIT_SERVE_METRICS=false)")
    return Response(generate_latest(registry_owner.registry), media_type=CONTENT_TYPE_LATEST)


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
    return json_response(envelope(not_ready(serving), request_id_of(request)), status_code=503)
