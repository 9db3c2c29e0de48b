"""The SavedModel runtime: the only module of the service that imports TensorFlow.

It loads a version's SavedModel, checks it against the repository's contract (the serving signature's input and
output, and that the card's parameter count equals the signature's variables), warms it up, and classifies
batches, padded up to a dozen sizes. It also converts a SavedModel to LiteRT, for versions exported before the
export wrote a LiteRT copy (service/runtimes/litert.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from models import contract
from models.contract import (
    DIGIT_CHECK_SIGNATURE,
    FEATURE_MAPS_SIGNATURE,
    INPUT_NAME,
    OUTPUT_NAME,
    SCORE_NAME,
    SIGNATURE_NAME,
)
from service.errors import NotSupported
from service.repository import ModelLoadError, ModelVersion
from service.runtimes import (
    FeatureMap,
    RuntimeOptions,
    check_warm_up,
    padded_batch_sizes,
    served_signature,
    side_by_side,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not ours to log.

import tensorflow as tf

INPUT_SHAPE = [None if size < 0 else size for size in contract.INPUT_SHAPE]  # as TensorFlow spells the batch axis
OUTPUT_SHAPE = [None if size < 0 else size for size in contract.OUTPUT_SHAPE]


class SavedModelRuntime:
    """A loaded, checked SavedModel version; `classify` is thread-safe and takes any batch size.

    Batches are padded up to a few sizes (1, 2, 3, 4, 6, 8, 12, ... up to the largest batch): every distinct
    input shape costs oneDNN ~0.6 MB of kernels and a first slow call, so a dozen sizes, all warmed up, serve in
    45 MB less than 64 would, for at most a third more arithmetic on a padded batch.
    """

    name = "savedmodel"

    def __init__(self, model: ModelVersion, options: RuntimeOptions) -> None:
        self.model = model
        self.batch_sizes = padded_batch_sizes(options.max_batch_size)
        configure_threads(options.threads)
        try:
            self._saved_model = tf.saved_model.load(str(model.path))
        except Exception as error:  # TensorFlow raises many types for a broken SavedModel.
            raise ModelLoadError(model.path, f"not a loadable SavedModel: {first_line(error)}") from None
        serving = _checked_signature(self._saved_model, model.path)
        _check_parameter_count(serving.variables, model)
        name, self._outputs = served_signature(model)
        self._signature = serving if name == SIGNATURE_NAME else _checked_digit_check(self._saved_model, model.path)

    def classify(self, pixels: np.ndarray) -> np.ndarray:
        """float32 pixels (n, 28, 28) in [0, 1], MNIST polarity → float32 probabilities (n, 10), and the raw
        digit score as an 11th column when the version has one (its `digit_check` signature)."""
        count = len(pixels)
        padded_size = next((size for size in self.batch_sizes if size >= count), count)
        batch = pixels[..., np.newaxis]
        if padded_size > count:
            batch = np.concatenate([batch, np.zeros((padded_size - count, 28, 28, 1), dtype=np.float32)])
        outputs = self._signature(**{INPUT_NAME: tf.constant(batch)})
        return side_by_side([outputs[name].numpy()[:count] for name in self._outputs])

    def feature_maps(self, pixels: np.ndarray) -> list[FeatureMap]:
        """Each convolution's and pooling's output for one image, from the SavedModel's `feature_maps` signature."""
        layers = self.model.card.get("feature_maps")
        signature = self._saved_model.signatures.get(FEATURE_MAPS_SIGNATURE)
        if not layers or signature is None:
            raise NotSupported(
                f"{self.model.name} version {self.model.version} was exported without the {FEATURE_MAPS_SIGNATURE} "
                "signature; ask for a newer version, or re-export this one (python -m training.reexport)"
            )
        outputs = signature(**{INPUT_NAME: tf.constant(pixels[..., np.newaxis])})
        return [FeatureMap(layer, outputs[layer].numpy()[0]) for layer in layers]

    def warm_up(self) -> None:
        """Run every batch size the server will use once, and check the answers are probabilities."""
        for size in self.batch_sizes:
            check_warm_up(self.model, self.model.path, self.classify(np.zeros((size, 28, 28), np.float32)), size)


def convert_to_litert(model: ModelVersion) -> bytes:
    """The signature the version is served from as a LiteRT (TFLite) flatbuffer."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(model.path), signature_keys=[served_signature(model)[0]])
    return bytes(converter.convert())


def configure_threads(threads: int) -> None:
    """Set TensorFlow's intra-op threads once, before it starts; later calls (tests) keep what was set."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1 if threads else 0)
    except RuntimeError:
        pass  # TensorFlow has already started in this process.


def _checked_signature(saved_model: Any, path: Any) -> Any:
    signatures = getattr(saved_model, "signatures", {})
    if SIGNATURE_NAME not in signatures:
        raise ModelLoadError(path, f"no {SIGNATURE_NAME!r} signature; found {sorted(signatures)}")
    signature = signatures[SIGNATURE_NAME]
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if list(inputs) != [INPUT_NAME] or list(outputs) != [OUTPUT_NAME]:
        raise ModelLoadError(
            path, f"signature maps {sorted(inputs)} → {sorted(outputs)}; expected ['{INPUT_NAME}'] → ['{OUTPUT_NAME}']"
        )
    _check_spec(path, "input", inputs[INPUT_NAME], INPUT_SHAPE)
    _check_spec(path, "output", outputs[OUTPUT_NAME], OUTPUT_SHAPE)
    return signature


def _checked_digit_check(saved_model: Any, path: Any) -> Any:
    """The `digit_check` signature a card with a digit check promises: image → probabilities and score."""
    signature = getattr(saved_model, "signatures", {}).get(DIGIT_CHECK_SIGNATURE)
    if signature is None:
        raise ModelLoadError(
            path, f"the card has a digit_check but the SavedModel has no {DIGIT_CHECK_SIGNATURE!r} signature"
        )
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if list(inputs) != [INPUT_NAME] or sorted(outputs) != sorted([OUTPUT_NAME, SCORE_NAME]):
        raise ModelLoadError(
            path,
            f"{DIGIT_CHECK_SIGNATURE} maps {sorted(inputs)} → {sorted(outputs)}; expected image → probabilities, score",
        )
    _check_spec(path, "input", inputs[INPUT_NAME], INPUT_SHAPE)
    _check_spec(path, "output", outputs[OUTPUT_NAME], OUTPUT_SHAPE)
    _check_spec(path, "score", outputs[SCORE_NAME], [None])
    return signature


def _check_spec(path: Any, role: str, spec: Any, expected_shape: list[int | None]) -> None:
    shape = spec.shape.as_list() if spec.shape.rank is not None else None
    if spec.dtype != tf.float32 or shape != expected_shape:
        raise ModelLoadError(path, f"signature {role} is {spec.dtype.name} {shape}; expected float32 {expected_shape}")


def _check_parameter_count(variables: Iterable[Any], model: ModelVersion) -> None:
    loaded = int(sum(np.prod(variable.shape) for variable in variables))
    promised = model.card["architecture"]["total_params"]
    if loaded != promised:
        raise ModelLoadError(
            model.path, f"the model card promises {promised:,} parameters but the SavedModel holds {loaded:,}"
        )


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
