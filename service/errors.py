"""The service's error hierarchy and the one handler that turns any error into an error response.

Every error the service's own API returns, validation errors and unknown paths included, has the same body:

    {"error": {"code": "invalid_shape", "message": "expected a 28x28 image, got 27x28", "details": ...},
     "request_id": "..."}

Domain code raises a subclass of `ServiceError`; it carries its own HTTP status and stable code, so the
handler needs no table of exceptions. The standard protocols' clients parse their protocol's own error form
instead (`{"error": "<message>"}` for TF Serving and the Open Inference Protocol): the middleware notes, per
request, which `ErrorBody` renders its errors (by path prefix), and every error response goes through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from service.encoding import json_response


class PortUnavailable(Exception):
    """A port the server was told to listen on cannot be bound (start-up fails, saying which)."""


class ClientGone(Exception):
    """The client disconnected before it was answered: the work for it is dropped, and nobody is answered."""


class ServiceError(Exception):
    """Base of every error the service answers with; subclasses set the status and the code."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class InvalidRequest(ServiceError):
    """The request is well-formed HTTP but its content cannot be used."""

    status_code = 422
    code = "invalid_request"


class InvalidJSON(InvalidRequest):
    status_code = 400
    code = "invalid_json"


class InvalidShape(InvalidRequest):
    code = "invalid_shape"


class InvalidPixels(InvalidRequest):
    code = "invalid_pixels"


class InvalidImage(InvalidRequest):
    code = "invalid_image"


class BlankImage(InvalidRequest):
    code = "blank_image"


class InvalidBase64(InvalidRequest):
    code = "invalid_base64"


class NotADigit(InvalidRequest):
    """The client asked (?reject=not_digit) to be refused rather than answered when an image is not a digit."""

    code = "not_a_digit"


class EmptyBatch(InvalidRequest):
    code = "empty_batch"


class BatchTooLarge(InvalidRequest):
    code = "batch_too_large"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class ImageTooLarge(ServiceError):
    status_code = 413
    code = "image_too_large"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    code = "unsupported_media_type"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class ModelNotFound(ServiceError):
    status_code = 404
    code = "model_not_found"


class VersionNotFound(ServiceError):
    status_code = 404
    code = "version_not_found"


class ModelNotReady(ServiceError):
    status_code = 503
    code = "model_not_ready"


class RetryLater(ServiceError):
    """503: the server cannot take the request now; `Retry-After` says when to try again (nginx then retries the
    request on the next replica)."""

    status_code = 503
    code = "service_unavailable"
    default_retry_after_seconds = 1

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        seconds = self.default_retry_after_seconds if retry_after_seconds is None else retry_after_seconds
        super().__init__(message, details={"retry_after_seconds": seconds}, headers={"Retry-After": str(seconds)})


class Overloaded(RetryLater):
    """The server is at capacity (queue, decoding backlog or concurrent requests): retry after a short pause."""

    code = "overloaded"


class ShuttingDown(RetryLater):
    """The server is stopping: the client should send the request again, to another replica if there is one."""

    code = "shutting_down"


class ServiceUnavailable(RetryLater):
    """A part of the server that every request needs has stopped (for instance the inference worker)."""

    default_retry_after_seconds = 5


class InsufficientMemory(RetryLater):
    """The server ran out of memory while working on the request: its problem, not the client's."""

    code = "insufficient_memory"


class NotSupported(ServiceError):
    """The request is valid, but the version or runtime that would answer it cannot do what it asks."""

    status_code = 501
    code = "not_supported"


class RequestTimeout(ServiceError):
    """The client took too long to send its request's headers or body."""

    status_code = 408
    code = "request_timeout"


class UriTooLong(ServiceError):
    status_code = 414
    code = "uri_too_long"


class HeaderFieldsTooLarge(ServiceError):
    status_code = 431
    code = "header_fields_too_large"


class DeadlineExceeded(ServiceError):
    """The request waited longer than its deadline and was never sent to the model."""

    status_code = 504
    code = "deadline_exceeded"


HTTP_STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", None) or request.headers.get("x-request-id", "")


def envelope(error: ServiceError, request_id: str) -> dict[str, Any]:
    """The one error body."""
    return {
        "error": {"code": error.code, "message": error.message, "details": error.details},
        "request_id": request_id,
    }


# An error and the request id → the status and the JSON body a protocol answers it with.
ErrorBody = Callable[[ServiceError, str], tuple[int, Any]]


def native_error_body(error: ServiceError, request_id: str) -> tuple[int, Any]:
    return error.status_code, envelope(error, request_id)


def error_body_for(scope: Any) -> ErrorBody:
    """How errors of this request are rendered: its protocol's form, as the middleware noted it."""
    render: ErrorBody = scope.get("state", {}).get("error_body", native_error_body)
    return render


def error_response(request: Request, error: ServiceError) -> Response:
    """Render one error in the request's protocol's form, with its status and headers."""
    status, body = error_body_for(request.scope)(error, request_id_of(request))
    return json_response(body, status_code=status, headers=error.headers)


async def handle_service_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ServiceError)
    return error_response(request, error)


async def handle_http_exception(request: Request, error: Exception) -> Response:
    """Starlette's own errors (unknown path, wrong method, ...) in the same envelope."""
    assert isinstance(error, StarletteHTTPException)
    wrapped = ServiceError(str(error.detail), headers=dict(error.headers or {}))
    wrapped.status_code = error.status_code
    wrapped.code = HTTP_STATUS_CODES.get(error.status_code, f"http_{error.status_code}")
    if error.status_code == 404:
        wrapped.message = f"no route for {request.method} {request.url.path}"
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        wrapped.message = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
    return error_response(request, wrapped)


async def handle_validation_error(request: Request, error: Exception) -> Response:
    """FastAPI's query/body validation errors, reduced to JSON-safe details."""
    assert isinstance(error, RequestValidationError)
    problems = [
        {"location": list(item.get("loc", ())), "message": item.get("msg", ""), "type": item.get("type", "")}
        for item in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(map(str, p['location']))}: {p['message']}" for p in problems)
    wrapped = InvalidRequest(f"the request is not valid: {summary}", details=problems)
    return error_response(request, wrapped)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, handle_service_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
