"""What routes depend on: the lifespan's serving state, 503 until it is ready."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.errors import ModelNotReady, ServiceError
from service.serving import ServingState


async def get_serving(request: Request) -> ServingState:
    """The lifespan's serving state; 503 until the model is loaded and warmed up (async: no threadpool hop)."""
    serving: ServingState | None = request.scope["state"].get("serving")
    if serving is None or not serving.is_ready:
        raise not_ready(serving)
    return serving


ServingDep = Annotated[ServingState, Depends(get_serving)]


def not_ready(serving: ServingState | None) -> ServiceError:
    stopped = serving.unavailable() if serving is not None else None
    if stopped is not None:
        return stopped
    return ModelNotReady("the model is not loaded and warmed up yet; retry when /health/ready answers 200")
