"""The native protocol: POST /predict, /models/{model}/predict and /models/{model}/versions/{version}/predict.

The friendliest way to send a digit: JSON pixel arrays, base64 image files, multipart uploads or a raw image body
(service/inputs.py reads them all), answered with one prediction per image. The hot path, mounted as a plain
Starlette route: FastAPI's per-request dependency and parameter solving cost ~50 µs here, about 40% of the whole
path (measured in-process), so the route reads its state and query itself; its OpenAPI description is written
out in service/openapi.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from service import core
from service.admission import LARGE_BODY_BYTES, Deadline
from service.dependencies import get_serving, not_ready
from service.digit_check import Classified
from service.encoding import json_response
from service.errors import InvalidRequest, NotADigit, NotSupported, request_id_of
from service.inputs import images_in_body, read_images
from service.inspection import encoded_feature_map, included, input_png_base64
from service.middleware import arrival_time, client_timeout, declared_body_bytes
from service.registry import LoadedVersion
from service.runtimes import FeatureMapsRuntime
from service.serving import ServingState

PREDICT_PATHS = ("/predict", "/models/{model}/predict", "/models/{model}/versions/{version}/predict")
PREPROCESS_OPTIONS = ("mnist", "none")
REJECT_OPTIONS = ("not_digit",)
PROTOCOL = "native"  # its name in metrics and access lines


async def predict(request: Request) -> Response:
    scope = request.scope
    state = scope["state"]
    state["protocol"] = PROTOCOL
    serving = await get_serving(request)
    settings = serving.settings
    version = chosen_version(serving, request) if scope["query_string"] or scope["path_params"] else serving.default
    if version is None:
        raise not_ready(serving)
    # The query is checked before admission: a request refused for its query never holds a reservation.
    include = included(request.query_params.getlist("include")) if scope["query_string"] else frozenset()
    reject_not_digits = _reject_option(request, version) if scope["query_string"] else False
    declared_bytes = declared_body_bytes(scope)
    deadline = Deadline.for_request(arrival_time(scope), settings.request_timeout_ms, client_timeout(scope))
    call = await core.admit(
        serving,
        version,
        declared_bytes=declared_bytes,
        deadline=deadline,
        is_disconnected=request.is_disconnected,
        state=state,
    )
    with call:
        max_images = settings.max_images_per_request
        if declared_bytes is None or declared_bytes > LARGE_BODY_BYTES:
            # Counted from its bytes before it is parsed or decoded, while refusing is still cheap.
            body = await request.body()  # read_images reads it again from memory
            call.expect(images_in_body(body, request.headers.get("content-type", ""), max_images))
        images = await read_images(request, call, max_images=max_images, preprocess=_preprocess_option(request))
        if "feature_maps" in include and len(images) != 1:
            raise InvalidRequest(
                f"include=feature_maps takes one image per request, got {len(images)}",
                details={"location": ["query", "include"]},
            )
        result = await call.classify(images)
        if reject_not_digits:
            refuse_not_digits(result, version)
        answer = prediction_body(result, version.info(), request_id_of(request))
        if "input" in include:
            for prediction, image in zip(answer["predictions"], images, strict=True):
                prediction["input"] = input_png_base64(image)
        if "feature_maps" in include:
            answer["predictions"][0]["feature_maps"] = await feature_maps_of(version, images)
    return json_response(answer)


async def feature_maps_of(version: LoadedVersion, images: np.ndarray) -> list[dict[str, Any]]:
    """Each conv and pooling layer's output for the one image, computed on the inference thread between batches."""
    runtime = version.runtime
    if not isinstance(runtime, FeatureMapsRuntime):
        raise NotSupported(
            f"the {runtime.name} runtime cannot show feature maps; the savedmodel runtime can "
            "(DIGIT_SERVE_RUNTIME=savedmodel, the default)"
        )
    pixels = images.astype(np.float32) / 255
    maps = await version.batcher.run_on_inference_thread(lambda: runtime.feature_maps(pixels))
    return [encoded_feature_map(feature_map) for feature_map in maps]


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
    version = version_number(path.get("version", query.get("version")))
    return serving.registry.resolve(name, version, label)


def version_number(text: str | None) -> int | None:
    """A version as a URL spells it ("12" → 12); InvalidRequest for anything but a positive integer."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1 or len(text) > 18:
        raise InvalidRequest(
            f"version must be a positive integer, got {text[:40]!r}", details={"location": ["query", "version"]}
        )
    return int(text)


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


def _reject_option(request: Request, version: LoadedVersion) -> bool:
    """?reject=not_digit: refuse (422 not_a_digit) instead of answering when an image is not a digit."""
    value = request.query_params.get("reject")
    if value is None:
        return False
    if value not in REJECT_OPTIONS:
        raise InvalidRequest(
            f"query parameter reject takes 'not_digit', got {value[:40]!r}", details={"location": ["query", "reject"]}
        )
    if version.digit_check is None:
        raise NotSupported(
            f"{version.model.name} version {version.model.version} cannot tell a digit from anything else (it was "
            "exported without a digit check); drop reject=not_digit or ask for a version that has one"
        )
    return True


def refuse_not_digits(result: Classified, version: LoadedVersion) -> None:
    """NotADigit, naming each image that is not a digit and its score, when any image is not one."""
    assert result.is_digit is not None and result.digit_scores is not None and version.digit_check is not None
    flagged = np.flatnonzero(~result.is_digit)
    if not len(flagged):
        return
    threshold = version.digit_check.threshold
    which = "the image does" if len(result.is_digit) == 1 else f"{len(flagged)} of {len(result.is_digit)} images do"
    raise NotADigit(
        f"{which} not look like a digit (digit_score below {threshold:.4g}); send a single handwritten digit 0-9, "
        "or drop reject=not_digit to get a prediction anyway",
        details={
            "threshold": threshold,
            "images": [{"index": int(index), "digit_score": float(result.digit_scores[index])} for index in flagged],
        },
    )


def prediction_body(result: Classified, model: dict[str, Any], request_id: str) -> dict[str, Any]:
    probabilities = result.probabilities
    digits = probabilities.argmax(axis=1)
    confidences = probabilities[np.arange(len(digits)), digits]
    if result.is_digit is None or result.digit_scores is None:
        checks: Any = [(None, None)] * len(digits)
    else:
        checks = zip(result.is_digit.tolist(), result.digit_scores.tolist(), strict=True)
    predictions = [
        {
            "digit": int(digit),
            "confidence": confidence,
            "probabilities": row,
            "is_digit": is_digit,
            "digit_score": digit_score,
        }
        for digit, confidence, row, (is_digit, digit_score) in zip(
            digits, confidences, probabilities, checks, strict=True
        )
    ]
    return {"predictions": predictions, "model": model, "request_id": request_id}
