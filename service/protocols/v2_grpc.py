"""The Open Inference Protocol (KServe V2) over gRPC: `inference.GRPCInferenceService` and the standard gRPC health
service, served by grpcio's asyncio server on DIGIT_SERVE_GRPC_PORT (8081; 0 turns it off), in the same process
and event loop as HTTP, over the same models, batchers and admission.

    ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer

Input tensors come as `raw_input_contents` (what tritonclient sends: little-endian bytes, one entry per input;
BYTES elements each prefixed by their 4-byte length) or as typed `contents` (fp32_contents, uint_contents,
bytes_contents); outputs go back as `raw_output_contents`, which tritonclient reads (it ignores typed contents).
Errors carry the gRPC status for their kind: INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, RESOURCE_EXHAUSTED (overload,
or a message over the body limit), DEADLINE_EXCEEDED, INTERNAL. The stubs are generated from KServe's
grpc_predict_v2.proto (service/protocols/grpc_stubs/, with the command that made them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from service import core
from service.admission import Deadline
from service.config import Settings
from service.dependencies import not_ready
from service.errors import InvalidRequest, Overloaded, PortUnavailable, ServiceError
from service.metrics import UNKNOWN
from service.protocols import open_inference as oip
from service.protocols.grpc_stubs import grpc_predict_v2_pb2 as pb
from service.protocols.grpc_stubs import grpc_predict_v2_pb2_grpc as pb_grpc
from service.protocols.native import version_number
from service.serving import ServingState

logger = logging.getLogger("service.grpc")

SERVICE_NAME = "inference.GRPCInferenceService"
PROTOCOL = "v2_grpc"  # its name in metrics
Response = TypeVar("Response")
TYPED_CONTENTS = {"FP32": "fp32_contents", "UINT8": "uint_contents", "BYTES": "bytes_contents"}


def status_code(error: ServiceError) -> grpc.StatusCode:
    """The gRPC status for an error of the service."""
    if isinstance(error, Overloaded) or error.status_code == 413:
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return {
        404: grpc.StatusCode.NOT_FOUND,
        408: grpc.StatusCode.DEADLINE_EXCEEDED,
        500: grpc.StatusCode.INTERNAL,
        503: grpc.StatusCode.UNAVAILABLE,
        504: grpc.StatusCode.DEADLINE_EXCEEDED,
    }.get(error.status_code, grpc.StatusCode.INVALID_ARGUMENT)


def answering_errors(
    method: Callable[[InferenceServicer, Any, grpc.aio.ServicerContext], Awaitable[Response]],
) -> Callable[[InferenceServicer, Any, grpc.aio.ServicerContext], Awaitable[Response]]:
    """A service error becomes the call's gRPC status and message; a fault of ours is logged and INTERNAL."""

    async def answer(self: InferenceServicer, request: Any, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await method(self, request, context)
        except ServiceError as error:
            await context.abort(status_code(error), error.message)
        except Exception:
            logger.exception("unhandled error in gRPC %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error; the server's log has the details")
        raise AssertionError("context.abort raises")  # pragma: no cover

    answer.__name__ = method.__name__
    return answer


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, serving: ServingState) -> None:
        self.serving = serving

    @answering_errors
    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    @answering_errors
    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.serving.is_ready)

    @answering_errors
    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ModelReadyResponse(
            ready=oip.model_ready(self.serving.registry, request.name, request.version or None)
        )

    @answering_errors
    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(**oip.server_metadata())

    @answering_errors
    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        registry = self.serving.registry
        model = registry.model(request.name)
        loaded = registry.resolve(request.name, version_number(request.version)) if request.version else None
        metadata = oip.model_metadata(model, loaded)
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**tensor) for tensor in metadata["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**tensor) for tensor in metadata["outputs"]],
        )

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Inference, answered as answering_errors does, and counted in the metrics with its status code."""
        arrived = time.monotonic()
        state: dict[str, Any] = {}
        code = "OK"
        try:
            return await self._infer(request, context, arrived, state)
        except ServiceError as error:
            status = status_code(error)
            code = status.name
            await context.abort(status, error.message)
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception:
            code = "INTERNAL"
            logger.exception("unhandled error in gRPC ModelInfer")
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error; the server's log has the details")
        finally:
            metrics = self.serving.metrics
            if metrics is not None:
                stats = state.get("stats")
                model, version = (stats.model, stats.version) if stats is not None else (UNKNOWN, "")
                verdicts = stats and stats.verdicts()
                metrics.request(PROTOCOL, model, version, code, time.monotonic() - arrived, verdicts=verdicts)
        raise AssertionError("context.abort raises")  # pragma: no cover

    async def _infer(
        self, request: Any, context: grpc.aio.ServicerContext, arrived: float, state: dict[str, Any]
    ) -> Any:
        serving = self.serving
        if not serving.is_ready:
            raise not_ready(serving)
        settings = serving.settings
        loaded = serving.registry.resolve(request.model_name, version_number(request.model_version or None))
        remaining = context.time_remaining()  # the client's gRPC deadline, if it set one
        client_timeout = None if remaining is None else f"{max(remaining, 0.001) * 1000:.3f}"
        deadline = Deadline.for_request(arrived, settings.request_timeout_ms, client_timeout)
        declared = sum(map(len, request.raw_input_contents)) or request.ByteSize()
        with await core.admit(serving, loaded, declared_bytes=declared, deadline=deadline, state=state) as call:
            images = oip.read_input(input_tensors(request), max_images=settings.max_images_per_request)
            pixels = images.pixels
            if pixels is None:
                assert images.files is not None
                pixels = await call.decode(images.files, preprocess=oip.preprocess_option(parameters(request)))
            result = await call.classify(pixels)
        outputs = oip.requested_outputs([output.name for output in request.outputs], loaded)
        response = pb.ModelInferResponse(model_name=loaded.model.name, model_version=str(loaded.model.version))
        if request.id:
            response.id = request.id
        for spec in outputs:
            values = oip.output_values(spec, result)
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=values.shape)
            response.raw_output_contents.append(values.tobytes())
        return response


def input_tensors(request: Any) -> list[oip.InputTensor]:
    """The request's inputs, with their data from raw_input_contents (one entry per input) or typed contents."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; send one per input"
        )
    tensors = []
    for index, tensor in enumerate(request.inputs):
        field = TYPED_CONTENTS.get(tensor.datatype)
        typed = getattr(tensor.contents, field) if field and tensor.HasField("contents") else None
        if raw and tensor.HasField("contents"):
            raise InvalidRequest(f"input {tensor.name!r} has both contents and raw_input_contents; send one")
        tensors.append(
            oip.InputTensor(
                tensor.name,
                tensor.datatype,
                list(tensor.shape),
                raw=raw[index] if raw else None,
                typed=typed if typed is not None and not raw else None,
                data=None,
            )
        )
    return tensors


def parameters(request: Any) -> dict[str, Any]:
    """The request's parameters as plain values (bool, int or string)."""
    values: dict[str, Any] = {}
    for key, parameter in request.parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


class ReadinessHealth(health.aio.HealthServicer):
    """grpc.health.v1.Health: SERVING while the server is ready (its default model answers), for the whole
    server ("") and for the inference service; NOT_FOUND for any other service name."""

    def __init__(self, serving: ServingState) -> None:
        super().__init__()
        self.serving = serving

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request.service not in ("", SERVICE_NAME):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service[:64]!r}")
        serving = self.serving.is_ready
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)


@contextlib.asynccontextmanager
async def grpc_serving(serving: ServingState, settings: Settings) -> AsyncIterator[int]:
    """Serve gRPC on settings.grpc_port while the block runs; yields the bound port."""
    limit = settings.max_body_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(serving), server)
    health_servicer = ReadinessHealth(serving)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{settings.host}:{settings.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise PortUnavailable(f"cannot listen for gRPC on {address}: {error}") from None
    if not port:
        raise PortUnavailable(f"cannot listen for gRPC on {address}")
    await server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    logger.info("gRPC (Open Inference Protocol, %s) on %s", SERVICE_NAME, address)
    try:
        yield port
    finally:
        await health_servicer.enter_graceful_shutdown()
        await server.stop(grace=settings.graceful_timeout_seconds)
