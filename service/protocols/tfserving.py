"""TensorFlow Serving's REST API (/v1), for clients written against TF Serving: the same URLs, bodies, answers and
errors, over this service's models and core.

    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict   {"instances": [...]} or {"inputs": ...}
    POST /v1/models/{name}[...]:classify, :regress               TF Serving's error for a predict-only signature
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]           {"model_version_status": [...]}
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata  {"model_spec": ..., "metadata": {"signature_def": ...}}

What was followed, from the public tensorflow/serving repository: the URL grammar of
`model_servers/http_rest_api_util.cc` (kPredictionApiGegex, kModelStatusApiRegex) and the dispatch and messages of
`model_servers/http_rest_api_handler.cc`; the request and response JSON of `util/json_tensor.cc`
(FillPredictRequestFromJson, MakeJsonFromTensors: with one output, row format answers each prediction as the bare
list, columnar answers the bare tensor; `{"error": msg}` from MakeJsonFromStatus); the HTTP statuses of
`model_servers/http_server.cc` ToHTTPStatusCode (INVALID_ARGUMENT 400, NOT_FOUND 404, UNAVAILABLE 503, ...); the
status JSON of `apis/get_model_status.proto` (versions as strings, newest first) and the metadata JSON of
`apis/get_model_metadata.proto` with the SavedModel's signature_def map.

Where this is stricter than TF Serving, on purpose: each instance must have the signature's shape [28, 28, 1]
(TF Serving lets the graph fail on a wrong one, with a model-dependent message), and pixels must be finite and in
[0, 1] (TF Serving passes NaN and 255.0 to the model, which then answers nonsense with confidence).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from models.contract import (
    DIGIT_CHECK_SIGNATURE,
    INPUT_NAME,
    INPUT_SHAPE,
    METHOD_NAME,
    OUTPUT_NAME,
    OUTPUT_SHAPE,
    SCORE_NAME,
    SIGNATURE_NAME,
)
from service import core
from service.admission import Deadline
from service.dependencies import get_serving
from service.encoding import json_response
from service.errors import (
    BatchTooLarge,
    InvalidJSON,
    InvalidRequest,
    InvalidShape,
    ModelNotFound,
    ServiceError,
    VersionNotFound,
)
from service.inputs import INLINE_JSON_BYTES
from service.middleware import arrival_time, client_timeout, declared_body_bytes
from service.registry import LoadedVersion, VersionState
from service.serving import ServingState
from service.tensors import float_pixels, json_array, kind, shape_text

PREFIX = "/v1/"
PROTOCOL = "tfserving"  # its name in metrics and access lines
# Every method reaches the endpoint, which says which one a URL takes (405 with Allow) as TF Serving cannot.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
PATH = "/v1/{path:path}"  # one route: TF Serving matches whole paths (":predict" is part of the last segment)
# http_rest_api_util.cc, without the case-insensitivity that its dispatch then contradicts (":PREDICT" is refused).
PREDICT_URL = re.compile(r"/v1/models/([^/:]+)(?:/versions/([0-9]+)|/labels/([^/:]+))?:(classify|regress|predict)")
STATUS_URL = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/([0-9]+)|/labels/([^/:]+))?(?:/(metadata))?")
INSTANCE_SHAPE = tuple(INPUT_SHAPE[1:])
# TF Serving's states (apis/get_model_status.proto); a version that failed to load is END with its error.
STATES = {
    VersionState.LOADING: "LOADING",
    VersionState.AVAILABLE: "AVAILABLE",
    VersionState.UNLOADING: "UNLOADING",
    VersionState.FAILED: "END",
}
# The service's statuses that TF Serving spells differently: it answers every INVALID_ARGUMENT with 400.
STATUSES = {415: 400, 422: 400}


class MalformedRequest(InvalidRequest):
    status_code = 400
    code = "malformed_request"


class MethodNotAllowed(ServiceError):
    """A TF Serving URL with the other method (GET on :predict, POST on a status or metadata URL): TF Serving says
    "Malformed request"; the status says which method the URL takes."""

    status_code = 405
    code = "method_not_allowed"


class UnrecognizedLabel(InvalidRequest):
    status_code = 400
    code = "unrecognized_label"


def error_body(error: ServiceError, request_id: str) -> tuple[int, Any]:
    """TF Serving's error form: {"error": "<message>"}, with its status codes."""
    return STATUSES.get(error.status_code, error.status_code), {"error": error.message}


async def endpoint(request: Request) -> Response:
    """Every /v1 request: TF Serving routes by matching the whole path, and so does this."""
    path: str = request.scope["path"]  # as sent (decoded); request.url would drop tabs and newlines from it
    method = request.method
    if method == "POST" and (match := PREDICT_URL.fullmatch(path)):
        name, version, label, verb = match.groups()
        if verb == "predict":
            return await predict(request, name, version, label)
        return await classify_or_regress(request, name, version, label, verb)
    if method in ("GET", "HEAD") and (match := STATUS_URL.fullmatch(path)):
        name, version, label, metadata = match.groups()
        if not name:
            raise MalformedRequest("Missing model name in request.")
        serving = await get_serving(request)
        if metadata:
            return json_response(model_metadata(resolve(serving, name, version, label)))
        return json_response(model_status(serving, name, version, label))
    message = f"Malformed request: {method} {path}"
    if PREDICT_URL.fullmatch(path):
        raise MethodNotAllowed(f"{message}; use POST", headers={"Allow": "POST"})
    if STATUS_URL.fullmatch(path):
        raise MethodNotAllowed(f"{message}; use GET", headers={"Allow": "GET, HEAD"})
    raise MalformedRequest(message)


async def predict(request: Request, name: str, version: str | None, label: str | None) -> Response:
    scope = request.scope
    scope["state"]["protocol"] = PROTOCOL
    serving = await get_serving(request)
    loaded = resolve(serving, name, version, label)
    deadline = Deadline.for_request(arrival_time(scope), serving.settings.request_timeout_ms, client_timeout(scope))
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
        max_images = serving.settings.max_images_per_request
        if len(body) <= INLINE_JSON_BYTES:
            pixels, columnar, signature = parse_predict_request(body, max_images, loaded)
        else:
            pixels, columnar, signature = await run_in_threadpool(parse_predict_request, body, max_images, loaded)
        result = await call.classify(pixels)
    if signature != DIGIT_CHECK_SIGNATURE:
        probabilities = result.probabilities
        return json_response({"outputs": probabilities} if columnar else {"predictions": probabilities})
    # Several outputs: TF Serving answers a dict of columns, or one dict per instance.
    assert result.raw_scores is not None
    if columnar:
        return json_response({"outputs": {OUTPUT_NAME: result.probabilities, SCORE_NAME: result.raw_scores}})
    rows = zip(result.probabilities, result.raw_scores.tolist(), strict=True)
    return json_response({"predictions": [{OUTPUT_NAME: row, SCORE_NAME: score} for row, score in rows]})


def parse_predict_request(body: bytes, max_images: int, loaded: LoadedVersion) -> tuple[np.ndarray, bool, str]:
    """A predict body → (n, 28, 28) float32 pixels, whether it was columnar (`inputs`) rather than row
    (`instances`) format, which decides the answer's format, and the signature it names (serving_default, or
    digit_check for a version that has it: probabilities and the raw score)."""
    request = _json_object(body)
    signature = request.get("signature_name", SIGNATURE_NAME)
    if not isinstance(signature, str):
        raise InvalidRequest(
            f"JSON Value: {_dump(signature)} not formatted correctly. 'signature_name' key must be a string value."
        )
    signature = signature or SIGNATURE_NAME
    if signature not in signature_defs(loaded) or signature.startswith("__"):
        raise InvalidRequest(f'Serving signature name: "{signature[:128]}" not found in signature def')
    if "instances" in request and "inputs" in request:
        raise InvalidRequest("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in request:
        return _instances(request["instances"], max_images), False, signature
    if "inputs" in request:
        return _inputs(request["inputs"], max_images), True, signature
    raise InvalidRequest(
        f"Missing 'inputs' or 'instances' key; expected {{\"instances\": [<{INPUT_NAME}>, ...]}} where each "
        f"{INPUT_NAME} is a float32 {shape_text(INSTANCE_SHAPE)} list of pixels in [0, 1]"
    )


def _instances(instances: Any, max_images: int) -> np.ndarray:
    """Row format: a list of instances, each the input's value or an object {"image": value}."""
    if not isinstance(instances, list):
        raise InvalidRequest(f"Expecting 'instances' to be an list/array; got {kind(instances)}")
    if not instances:
        raise InvalidRequest("No values in 'instances' array")
    _check_batch_size(len(instances), max_images)
    named = isinstance(instances[0], dict)
    values = []
    for index, instance in enumerate(instances):
        if isinstance(instance, dict) != named:
            expected = "object" if named else "value/list"
            raise InvalidRequest(f"Expecting {expected} but got {kind(instance)} at item {index} of input list")
        if named:
            if set(instance) != {INPUT_NAME}:
                raise InvalidRequest(
                    f"Failed to process element: {index} of 'instances' list. JSON object: keys must be equal to: "
                    f"{INPUT_NAME}; got {', '.join(sorted(map(str, instance))[:8]) or 'none'}"
                )
            instance = instance[INPUT_NAME]
        values.append(instance)
    array = json_array(values, integers=False, where="instances")
    if array.shape[1:] != INSTANCE_SHAPE:
        _raise_for_instance_shape(values)
    return float_pixels(array, "instances")[..., 0]


def _inputs(inputs: Any, max_images: int) -> np.ndarray:
    """Columnar format: the whole batch as one tensor, bare or as {"image": tensor}."""
    if isinstance(inputs, dict):
        if INPUT_NAME not in inputs:
            raise InvalidRequest(f"Missing named input: {INPUT_NAME} in 'inputs' object.")
        inputs = inputs[INPUT_NAME]
    array = json_array(inputs, integers=False, where="inputs")
    if array.ndim != len(INPUT_SHAPE) or array.shape[1:] != INSTANCE_SHAPE or len(array) == 0:
        raise InvalidShape(
            f"inputs has shape {shape_text(array.shape)}; the signature's {INPUT_NAME} is float32 "
            f"{shape_text(INPUT_SHAPE)}: a batch of 28x28x1 pixel lists (at least one)"
        )
    _check_batch_size(len(array), max_images)
    return float_pixels(array, "inputs")[..., 0]


def _raise_for_instance_shape(values: list[Any]) -> None:
    for index, value in enumerate(values):
        shape = np.shape(value)
        if shape != INSTANCE_SHAPE:
            raise InvalidShape(
                f"Failed to process element: {index} of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape "
                f"{shape_text(INSTANCE_SHAPE)} but got: {shape_text(shape)} (the signature's {INPUT_NAME} is "
                f"float32 {shape_text(INPUT_SHAPE)}: 28 rows of 28 one-element lists of pixels in [0, 1])"
            )


def _check_batch_size(count: int, limit: int) -> None:
    if count > limit:
        raise BatchTooLarge(f"{count} instances sent; the limit is {limit} per request")


async def classify_or_regress(
    request: Request, name: str, version: str | None, label: str | None, verb: str
) -> Response:
    """TF Serving's answer for this model: its one signature is a predict signature, so classify and regress find
    no inputs of theirs (classifier.cc / regressor.cc, with the server's default flags)."""
    request.scope["state"]["protocol"] = PROTOCOL
    serving = await get_serving(request)
    body = _json_object(await request.body())
    if "examples" not in body:
        raise InvalidRequest(f"When method is {verb}, key 'examples' is expected and was not found")
    resolve(serving, name, version, label)
    what = "classification" if verb == "classify" else "regression"
    raise InvalidRequest(f"No {what} inputs found in SignatureDef: {signature_def_text()}")


def resolve(serving: ServingState, name: str, version: str | None, label: str | None) -> LoadedVersion:
    """The version a URL names, or TF Serving's error for it (with the choices there are)."""
    number = _version_number(version) if version is not None else None
    try:
        return serving.registry.resolve(name, number, label)
    except ModelNotFound as error:
        raise ModelNotFound(f"Servable not found for request: Latest({name}); {error.message}") from None
    except VersionNotFound as error:
        if label is not None and "has no label" in error.message:
            raise UnrecognizedLabel(f"Unrecognized servable version label: {label}; {error.message}") from None
        shown = version if version is not None else label
        raise VersionNotFound(f"Servable not found for request: Specific({name}, {shown}); {error.message}") from None


def model_status(serving: ServingState, name: str, version: str | None, label: str | None) -> dict[str, Any]:
    model = serving.registry.models.get(name)
    if model is None or not model.versions:
        raise ModelNotFound(f"Could not find any versions of model {name}")
    statuses = sorted(model.versions.values(), key=lambda status: status.version, reverse=True)
    if label is not None:
        version = str(resolve(serving, name, None, label).model.version)
    if version is not None:
        number = _version_number(version)
        statuses = [status for status in statuses if status.version == number]
        if not statuses:
            raise ModelNotFound(f"Could not find version {number} of model {name}")
    return {
        "model_version_status": [
            {
                "version": str(status.version),
                "state": STATES[status.state],
                "status": {
                    "error_code": "UNKNOWN" if status.state is VersionState.FAILED else "OK",
                    "error_message": status.error or "",
                },
            }
            for status in statuses
        ]
    }


def model_metadata(loaded: LoadedVersion) -> dict[str, Any]:
    return {
        "model_spec": {"name": loaded.model.name, "signature_name": "", "version": str(loaded.model.version)},
        "metadata": {"signature_def": {"signature_def": signature_defs(loaded)}},
    }


def signature_defs(loaded: LoadedVersion) -> dict[str, Any]:
    """The version's signatures: the serving one, and `digit_check` when it was exported with one."""
    if loaded.digit_check is None:
        return SIGNATURE_DEFS
    return {DIGIT_CHECK_SIGNATURE: DIGIT_CHECK_DEF, **SIGNATURE_DEFS}


def _tensor_info(dtype: str, shape: tuple[int, ...] | None, name: str) -> dict[str, Any]:
    dims = [{"size": str(size), "name": ""} for size in shape or ()]
    return {"dtype": dtype, "tensor_shape": {"dim": dims, "unknown_rank": shape is None}, "name": name}


# The SavedModel's signature_def map as TF Serving prints it: the tensor names are those TensorFlow gives a Keras
# model exported with tf.saved_model.save (`serving_default_<input>:0`, `StatefulPartitionedCall:0`).
SIGNATURE_DEFS: dict[str, Any] = {
    SIGNATURE_NAME: {
        "inputs": {INPUT_NAME: _tensor_info("DT_FLOAT", INPUT_SHAPE, f"{SIGNATURE_NAME}_{INPUT_NAME}:0")},
        "outputs": {OUTPUT_NAME: _tensor_info("DT_FLOAT", OUTPUT_SHAPE, "StatefulPartitionedCall:0")},
        "method_name": METHOD_NAME,
        "defaults": {},
    },
    "__saved_model_init_op": {
        "inputs": {},
        "outputs": {"__saved_model_init_op": _tensor_info("DT_INVALID", None, "NoOp")},
        "method_name": "",
        "defaults": {},
    },
}


DIGIT_CHECK_DEF: dict[str, Any] = {
    "inputs": {INPUT_NAME: _tensor_info("DT_FLOAT", INPUT_SHAPE, f"{DIGIT_CHECK_SIGNATURE}_{INPUT_NAME}:0")},
    "outputs": {
        OUTPUT_NAME: _tensor_info("DT_FLOAT", OUTPUT_SHAPE, "StatefulPartitionedCall_1:0"),
        SCORE_NAME: _tensor_info("DT_FLOAT", (-1,), "StatefulPartitionedCall_1:1"),
    },
    "method_name": METHOD_NAME,
    "defaults": {},
}


def signature_def_text() -> str:
    """The serving signature in protobuf text format, as TF Serving quotes it in its classify/regress errors."""
    definition = SIGNATURE_DEFS[SIGNATURE_NAME]

    def tensor(role: str, key: str, info: dict[str, Any]) -> str:
        dims = " ".join(f"dim {{ size: {dim['size']} }}" for dim in info["tensor_shape"]["dim"])
        value = f'name: "{info["name"]}" dtype: {info["dtype"]} tensor_shape {{ {dims} }}'
        return f'{role} {{ key: "{key}" value {{ {value} }} }}'

    parts = [tensor("inputs", key, info) for key, info in definition["inputs"].items()]
    parts += [tensor("outputs", key, info) for key, info in definition["outputs"].items()]
    return " ".join([*parts, f'method_name: "{definition["method_name"]}"'])


def _version_number(text: str) -> int:
    if len(text) > 18:
        raise MalformedRequest(f"Failed to convert version: {text[:40]} to numeric.")
    return int(text)


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise InvalidJSON("JSON Parse error: The document is empty")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidJSON(f"JSON Parse error: {error}") from None
    if not isinstance(document, dict):
        raise InvalidRequest(f"JSON Value: {_dump(document)} Is not object")
    return document


def _dump(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 256 else text[:253] + "..."
