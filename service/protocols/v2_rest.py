"""The Open Inference Protocol (KServe V2) over REST, with Triton's binary tensor data extension.

    GET  /v2                                           server metadata: name, version, extensions
    GET  /v2/health/live, /v2/health/ready             200 or 503
    GET  /v2/models/{model}[/versions/{version}]       model metadata: versions, platform, inputs, outputs
    GET  /v2/models/{model}[/versions/{version}]/ready 200, 503 (not available) or 404 (no such model or version)
    POST /v2/models/{model}[/versions/{version}]/infer

An inference body is a JSON object, optionally followed by binary tensor data: the `Inference-Header-Content-Length`
header then gives the JSON's length, and each binary input says its size in `parameters.binary_data_size`
(inputs in order). Outputs come back as JSON `data`, or as binary data after the JSON when the request asks
(`binary_data` on a requested output, or `binary_data_output` for all of them), with the same header on the
response. The body's Content-Type is not looked at: stock tritonclient sends none, JSON and binary alike, and
the header tells the two apart. The tensors themselves are open_inference.py's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from service import core
from service.admission import Deadline
from service.dependencies import get_serving
from service.digit_check import Classified
from service.encoding import json_response
from service.errors import InvalidJSON, InvalidRequest
from service.inputs import INLINE_JSON_BYTES
from service.middleware import arrival_time, client_timeout, declared_body_bytes
from service.protocols import open_inference as oip
from service.protocols.native import version_number
from service.protocols.schemas import (
    ProtocolError,
    V2ModelMetadata,
    V2ModelReady,
    V2ServerLive,
    V2ServerMetadata,
    V2ServerReady,
)
from service.registry import LoadedVersion
from service.serving import ServingState
from service.tensors import kind

PREFIX = "/v2"
PROTOCOL = "v2_rest"  # its name in metrics and access lines
HEADER_LENGTH = "inference-header-content-length"
INFER_PATHS = ("/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer")
ModelName = Annotated[str, Path(description="The model", max_length=256)]
VersionNumber = Annotated[int, Path(description="The version", ge=1, le=10**18 - 1)]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such model or version", "model": ProtocolError},
    503: {"description": "Not ready", "model": ProtocolError},
}

router = APIRouter(prefix=PREFIX, tags=["Open Inference Protocol (KServe V2)"])


@router.get("", summary="Server metadata: name, version, extensions", response_model=V2ServerMetadata)
async def server_metadata() -> Response:
    return json_response(oip.server_metadata())


@router.get("/health/live", summary="Server liveness", response_model=V2ServerLive)
async def server_live() -> Response:
    return json_response({"live": True})


@router.get(
    "/health/ready", summary="Server readiness (503 until ready)", response_model=V2ServerReady, responses=ERRORS
)
async def server_ready(request: Request) -> Response:
    serving: ServingState | None = request.scope["state"].get("serving")
    ready = serving is not None and serving.is_ready
    return json_response({"ready": ready}, status_code=200 if ready else 503)


@router.get("/models/{model}", summary="Model metadata", response_model=V2ModelMetadata, responses=ERRORS)
async def model_metadata(request: Request, model: ModelName) -> Response:
    return await _model_metadata(request, model, None)


@router.get(
    "/models/{model}/versions/{version}",
    summary="Model version metadata",
    response_model=V2ModelMetadata,
    responses=ERRORS,
)
async def model_version_metadata(request: Request, model: ModelName, version: VersionNumber) -> Response:
    return await _model_metadata(request, model, str(version))


@router.get("/models/{model}/ready", summary="Model readiness", response_model=V2ModelReady, responses=ERRORS)
async def model_ready(request: Request, model: ModelName) -> Response:
    return await _model_ready(request, model, None)


@router.get(
    "/models/{model}/versions/{version}/ready",
    summary="Model version readiness",
    response_model=V2ModelReady,
    responses=ERRORS,
)
async def model_version_ready(request: Request, model: ModelName, version: VersionNumber) -> Response:
    return await _model_ready(request, model, str(version))


async def _model_metadata(request: Request, model: str, version: str | None) -> Response:
    serving = await get_serving(request)
    served = serving.registry.model(model)
    loaded = serving.registry.resolve(model, version_number(version)) if version is not None else None
    return json_response(oip.model_metadata(served, loaded))


async def _model_ready(request: Request, model: str, version: str | None) -> Response:
    serving = await get_serving(request)
    ready = oip.model_ready(serving.registry, model, version)
    return json_response({"name": model, "ready": ready}, status_code=200 if ready else 503)


@dataclass
class InferRequest:
    """A parsed inference request: what the core needs, and how the client wants its answer."""

    request_id: str | None
    images: oip.Images
    preprocess: bool
    outputs: list[tuple[oip.TensorSpec, bool]]  # each requested output, and whether it goes as binary data


async def infer(request: Request) -> Response:
    """POST /v2/models/{model}[/versions/{version}]/infer: a plain Starlette route (it reads its body whatever the
    Content-Type says, or does not say); documented in service/openapi.py."""
    scope = request.scope
    scope["state"]["protocol"] = PROTOCOL
    serving = await get_serving(request)
    loaded = resolve(serving, request.path_params["model"], request.path_params.get("version"))
    settings = serving.settings
    deadline = Deadline.for_request(arrival_time(scope), settings.request_timeout_ms, client_timeout(scope))
    call = await core.admit(
        serving,
        loaded,
        declared_bytes=declared_body_bytes(scope),
        deadline=deadline,
        is_disconnected=request.is_disconnected,
        state=scope["state"],
    )
    with call:
        body = await request.body()
        header_length = request.headers.get(HEADER_LENGTH)
        max_images = settings.max_images_per_request
        if len(body) <= INLINE_JSON_BYTES:
            parsed = parse_infer_request(body, header_length, max_images, loaded)
        else:
            parsed = await run_in_threadpool(parse_infer_request, body, header_length, max_images, loaded)
        images = parsed.images
        pixels = images.pixels
        if pixels is None:
            assert images.files is not None
            pixels = await call.decode(images.files, preprocess=parsed.preprocess)
        result = await call.classify(pixels)
    return infer_response(loaded, parsed, result)


def resolve(serving: ServingState, model: str, version: str | None) -> LoadedVersion:
    return serving.registry.resolve(model, version_number(version))


def parse_infer_request(body: bytes, header_length: str | None, max_images: int, loaded: LoadedVersion) -> InferRequest:
    header, binary = split_body(body, header_length)
    document = _json_object(header)
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest(f"id must be a string; got {kind(request_id)}")
    parameters = _parameters(document.get("parameters"), "parameters")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest(f"inputs must be a non-empty list of input tensors, one of {oip.INPUT_CHOICES}")
    tensors = []
    offset = 0
    for index, item in enumerate(inputs):
        tensor, used = _input_tensor(item, index, binary, offset)
        tensors.append(tensor)
        offset += used
    if offset != len(binary):
        raise InvalidRequest(
            f"{len(binary):,} bytes of binary data follow the JSON, but the inputs' binary_data_size add up to "
            f"{offset:,}"
        )
    all_binary = _boolean(parameters.get("binary_data_output", False), "parameters.binary_data_output")
    outputs = _requested_outputs(document.get("outputs"), all_binary, loaded)
    images = oip.read_input(tensors, max_images=max_images)
    return InferRequest(request_id, images, oip.preprocess_option(parameters), outputs)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON part of a body and the binary data after it, as Inference-Header-Content-Length divides them."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if length == 0:
        raise InvalidRequest(
            "Inference-Header-Content-Length: 0 (a raw binary request) is not supported; send the JSON inference "
            "request first, and its length in this header"
        )
    if not 0 < length <= len(body):
        raise InvalidRequest(
            f"Inference-Header-Content-Length is {header_length[:40]!r}; it must be the length in bytes of the JSON "
            f"at the start of the body (1 to {len(body):,})"
        )
    return body[:length], body[length:]


def _input_tensor(item: Any, index: int, binary: bytes, offset: int) -> tuple[oip.InputTensor, int]:
    """One entry of `inputs` → an InputTensor, and how many bytes of the binary data it took."""
    where = f"inputs[{index}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object with name, shape, datatype and data; got {kind(item)}")
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise InvalidRequest(f"{where} needs a string name and datatype, one of {oip.INPUT_CHOICES}")
    if not isinstance(shape, list) or not all(isinstance(size, int) and not isinstance(size, bool) for size in shape):
        raise InvalidRequest(f"{where} ({name[:64]!r}) needs a shape: a list of integers, such as [1, 28, 28, 1]")
    parameters = _parameters(item.get("parameters"), f"{where}.parameters")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise InvalidRequest(f"{where} ({name[:64]!r}) has neither data nor parameters.binary_data_size")
        return oip.InputTensor(name, datatype, shape, data=item["data"]), 0
    if "data" in item:
        raise InvalidRequest(f"{where} ({name[:64]!r}) has both data and binary_data_size; send one")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
        raise InvalidRequest(
            f"{where} ({name[:64]!r}) has binary_data_size {str(size)[:20]}, but {len(binary) - offset:,} bytes of "
            "binary data are left for it"
        )
    return oip.InputTensor(name, datatype, shape, raw=binary[offset : offset + size]), size


def _requested_outputs(outputs: Any, all_binary: bool, loaded: LoadedVersion) -> list[tuple[oip.TensorSpec, bool]]:
    if outputs is None or outputs == []:  # none named: all of them
        return [(spec, all_binary) for spec in oip.requested_outputs(None, loaded)]
    if not isinstance(outputs, list) or not all(isinstance(item, dict) for item in outputs):
        raise InvalidRequest('outputs must be a list of objects such as {"name": "probabilities"}')
    names = []
    binary = []
    for index, item in enumerate(outputs):
        name = item.get("name")
        if not isinstance(name, str):
            raise InvalidRequest(f"outputs[{index}] needs a string name")
        parameters = _parameters(item.get("parameters"), f"outputs[{index}].parameters")
        names.append(name)
        binary.append(_boolean(parameters.get("binary_data", all_binary), f"outputs[{index}].parameters.binary_data"))
    return list(zip(oip.requested_outputs(names, loaded), binary, strict=True))


def infer_response(loaded: LoadedVersion, parsed: InferRequest, result: Classified) -> Response:
    """The inference response: JSON data, or binary data after the JSON for the outputs that asked for it."""
    outputs = []
    chunks = []
    for spec, as_binary in parsed.outputs:
        values = oip.output_values(spec, result)
        output: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype, "shape": list(values.shape)}
        if as_binary:
            chunk = values.tobytes()
            output["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            output["data"] = values.ravel()
        outputs.append(output)
    document: dict[str, Any] = {"model_name": loaded.model.name, "model_version": str(loaded.model.version)}
    if parsed.request_id is not None:
        document["id"] = parsed.request_id
    document["outputs"] = outputs
    if not chunks:
        return json_response(document)
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(
        header + b"".join(chunks),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


def _json_object(header: bytes) -> dict[str, Any]:
    if not header.strip():
        raise InvalidJSON('the body is empty; expected a JSON inference request such as {"inputs": [...]}')
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as error:
        raise InvalidJSON(
            f"the inference request is not valid JSON ({error}); binary data must follow the JSON and be announced "
            "by the Inference-Header-Content-Length header"
        ) from None
    if not isinstance(document, dict):
        raise InvalidRequest(f"the inference request must be a JSON object; got {kind(document)}")
    return document


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be an object; got {kind(value)}")
    return value


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{where} must be true or false; got {kind(value)}")
    return value
