"""What runs a model version: a small contract, and one module per runtime, so that adding a runtime is adding a
file. Choosing one is a lookup by name (DIGIT_SERVE_RUNTIME).

- savedmodel.py: the SavedModel's signature, through TensorFlow (the only module of the service that imports it);
- litert.py: the LiteRT model the export wrote beside the SavedModel, through ai-edge-litert, without TensorFlow
  (older versions without that file are converted at load, which needs TensorFlow);
- onnx.py: the ONNX model the export wrote beside it, through ONNX Runtime, without TensorFlow.

A runtime reads float32 pixels in [0, 1], (n, 28, 28), the signature's own input (service/core.py scales uint8
pixels; the TF Serving and Open Inference protocols send floats), and answers (n, 10) float32 probabilities, or,
for a version that carries a "not a digit" check (its card's `digit_check`), (n, 11): the probabilities and the
raw score side by side, from the `digit_check` signature (one model call for both; rows stay rows, so the batcher
splits them as before). Feature maps (/predict?include=feature_maps) are optional: a runtime that cannot produce
them says so.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from models.contract import DIGIT_CHECK_SIGNATURE, OUTPUT_NAME, SCORE_NAME, SIGNATURE_NAME
from service.repository import ModelLoadError, ModelVersion

RUNTIMES = ("savedmodel", "litert", "onnx")


@dataclass(frozen=True)
class RuntimeOptions:
    threads: int = 1  # intra-op threads (0: the library decides)
    max_batch_size: int = 64  # the largest batch the batcher hands over


class Runtime(Protocol):
    name: str

    def classify(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (n, 28, 28) pixels in [0, 1] → float32 (n, 10) probabilities, or (n, 11) with the raw digit
        score last when the version has a digit check; any n."""
        ...

    def warm_up(self) -> None:
        """Run every batch size the batcher will use once, before the version serves."""
        ...


@dataclass(frozen=True)
class FeatureMap:
    """One layer's output for one image: (height, width, channels) float32."""

    layer: str
    values: np.ndarray


@runtime_checkable
class FeatureMapsRuntime(Runtime, Protocol):
    """A runtime that can also show what each convolution and pooling layer made of one image."""

    def feature_maps(self, pixels: np.ndarray) -> list[FeatureMap]:
        """float32 (1, 28, 28) pixels in [0, 1] → each conv/pooling layer's output, in the model's order. Raises
        NotSupported when the version was exported without the `feature_maps` signature."""
        ...


def load_runtime(model: ModelVersion, name: str, options: RuntimeOptions) -> Runtime:
    """The named runtime, loaded and checked against the contract (ModelLoadError if it cannot serve `model`).
    Imported on demand: the SavedModel runtime imports TensorFlow, which a slim image does not have."""
    if name == "savedmodel":
        from service.runtimes.savedmodel import SavedModelRuntime

        return SavedModelRuntime(model, options)
    if name == "litert":
        from service.runtimes.litert import load_litert

        return load_litert(model, options)
    if name == "onnx":
        from service.runtimes.onnx import load_onnx

        return load_onnx(model, options)
    raise ValueError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}")


def read_exported_model(model: ModelVersion, key: str, what: str) -> tuple[Path, bytes]:
    """The converted model the card records under `key` ("litert", "onnx"): its path and bytes, refused
    (ModelLoadError) if it cannot be read or its SHA-256 is not the card's."""
    recorded = model.card[key]
    path = model.path / recorded["file"]
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ModelLoadError(path, f"the card's {what} model cannot be read: {error.strerror}") from None
    if hashlib.sha256(content).hexdigest() != recorded["sha256"]:
        raise ModelLoadError(path, f"the {what} model's SHA-256 is not the one the card records")
    return path, content


def has_digit_check(model: ModelVersion) -> bool:
    """Whether the version was exported with the `digit_check` signature (and its converted models are it)."""
    return model.card.get("digit_check") is not None


def served_signature(model: ModelVersion) -> tuple[str, list[str]]:
    """The signature a runtime calls for this version, and its outputs in the order `classify` puts them."""
    if has_digit_check(model):
        return DIGIT_CHECK_SIGNATURE, [OUTPUT_NAME, SCORE_NAME]
    return SIGNATURE_NAME, [OUTPUT_NAME]


def side_by_side(outputs: list[np.ndarray]) -> np.ndarray:
    """The outputs of one call as `classify` answers: probabilities (n, 10), then the score (n,) as a column."""
    if len(outputs) == 1:
        return outputs[0]
    return np.concatenate([outputs[0], outputs[1].reshape(-1, 1)], axis=1)


def check_warm_up(model: ModelVersion, path: Path, answer: np.ndarray, size: int) -> None:
    """A warm-up call's answer must be `size` rows of probabilities (and a finite score when there is one)."""
    width = 11 if has_digit_check(model) else 10
    probabilities = answer[:, :10]
    if answer.shape != (size, width) or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
        raise ModelLoadError(path, f"warm-up gave {answer.shape} rows that are not probabilities")
    if not np.isfinite(answer).all():
        raise ModelLoadError(path, "warm-up gave values that are not finite")


def tensorflow_installed() -> bool:
    """Whether TensorFlow could be imported, without importing it (an import hook that forbids it counts as no)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except ImportError:
        return False


def padded_batch_sizes(largest: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, ...: powers of two and one and a half times them, up to `largest`."""
    sizes = {largest}
    power = 1
    while power <= largest:
        sizes.update(size for size in (power, power * 3 // 2) if 0 < size <= largest)
        power *= 2
    return sorted(sizes)


def powers_of_two_up_to(limit: int) -> list[int]:
    sizes = [1]
    while sizes[-1] * 2 <= limit:
        sizes.append(sizes[-1] * 2)
    return sizes


def decompose(count: int, largest: int) -> list[int]:
    """count as a sum of powers of two, the largest first: 37 → [32, 4, 1]; 130 with largest 64 → [64, 64, 2]."""
    sizes = []
    while count:
        size = largest
        while size > count:
            size //= 2
        sizes.append(size)
        count -= size
    return sizes
