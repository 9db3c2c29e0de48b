"""create_app(settings): the wiring of the service, and nothing else."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from service.config import Settings
from service.encoding import ORJSONResponse
from service.errors import install_error_handlers
from service.middleware import RequestContextMiddleware
from service.openapi import install_openapi
from service.policy import PolicyError
from service.repository import ModelLoadError
from service.routes import PREDICT_PATHS, predict, router
from service.serving import open_serving

logger = logging.getLogger("service")


class StartupAborted(Exception):
    """The model could not be served; the reason was logged as one line."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, object]]:
        try:
            async with open_serving(settings) as serving:
                yield {"serving": serving}
        except ModelLoadError as error:  # Raised only at start-up, before the yield.
            logger.critical("cannot serve the model at %s: %s", error.path, error.problem)
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
    for path in PREDICT_PATHS:
        app.add_route(path, predict, methods=["POST"], include_in_schema=False)
    app.include_router(router)
    install_error_handlers(app)
    install_openapi(app, settings)
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, replica_name=settings.replica_name
    )
    return app
