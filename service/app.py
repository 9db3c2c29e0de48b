"""create_app(settings): the wiring of the service, and nothing else."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from service import page
from service.config import Settings
from service.encoding import ORJSONResponse
from service.errors import PortUnavailable, install_error_handlers
from service.metrics import Metrics
from service.middleware import RequestContextMiddleware
from service.openapi import install_openapi
from service.policy import PolicyError
from service.protocols import native, open_inference, tfserving, v2_rest
from service.repository import ModelLoadError
from service.routes import router
from service.serving import ServingState, open_serving

logger = logging.getLogger("service")


class StartupAborted(Exception):
    """The model could not be served; the reason was logged as one line."""


@contextlib.asynccontextmanager
async def grpc_serving(serving: ServingState, settings: Settings) -> AsyncIterator[None]:
    """The gRPC server beside HTTP, unless its port is 0. Imported only then: its generated stubs register the
    proto's messages in protobuf's global pool, where a client library's copy of the same messages would clash."""
    if not settings.grpc_port:
        yield
        return
    from service.protocols import v2_grpc

    async with v2_grpc.grpc_serving(serving, settings):
        yield


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics() if settings.metrics else None  # the app's own registry

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, object]]:
        try:
            async with open_serving(settings, metrics) as serving, grpc_serving(serving, settings):
                yield {"serving": serving, "metrics": metrics}
        except ModelLoadError as error:  # Raised only at start-up, before the yield.
            logger.critical("cannot serve the model at %s: %s", error.path, error.problem)
            raise StartupAborted(str(error)) from None
        except PortUnavailable as error:
            logger.critical("%s", error)
            raise StartupAborted(str(error)) from None
        except PolicyError as error:
            logger.critical("cannot use the serving configuration %s: %s", error.path, error.problem)
            raise StartupAborted(str(error)) from None

    app = FastAPI(
        title="digit-serve",
        version="0.1.0",
        description="Handwritten digit recognition over HTTP: the convnet of Deep Learning with Python §5.1.",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
        # /predict/ is not /predict: a redirect would be built from the Host header (an open redirect).
        redirect_slashes=False,
    )
    # Inference, one module per protocol, every one over the same core (service/core.py). The hot routes are plain
    # Starlette routes that read their own bodies; service/openapi.py documents them.
    for path in native.PREDICT_PATHS:
        app.add_route(path, native.predict, methods=["POST"], include_in_schema=False)
    app.add_route(tfserving.PATH, tfserving.endpoint, methods=list(tfserving.METHODS), include_in_schema=False)
    for path in v2_rest.INFER_PATHS:
        app.add_route(path, v2_rest.infer, methods=["POST"], include_in_schema=False)
    app.include_router(v2_rest.router)
    app.include_router(router)
    app.include_router(page.router)  # the draw-a-digit page at /, its files and a version's pictures
    install_error_handlers(app)
    install_openapi(app, settings)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        replica_name=settings.replica_name,
        error_bodies=((tfserving.PREFIX, tfserving.error_body), (v2_rest.PREFIX, open_inference.error_body)),
        metrics=metrics,
        access_log=settings.access_log,
    )
    return app
