"""The model runtime: the only module of the service that imports TensorFlow.

It loads a SavedModel version, checks it against the contract (signature and parameter count), warms it up,
and classifies batches: float32 pixels in [0, 1] in, float32 probabilities out (service/core.py scales uint8
pixels; the TF Serving and Open Inference protocols send the signature's floats as they are). Callers see numpy
arrays only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from models import contract
from models.contract import INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME
from service.repository import ModelLoadError, ModelVersion

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not ours to log.

import tensorflow as tf

logger = logging.getLogger("service.runtime")

INPUT_SHAPE = [None if size < 0 else size for size in contract.INPUT_SHAPE]  # as TensorFlow spells the batch axis
OUTPUT_SHAPE = [None if size < 0 else size for size in contract.OUTPUT_SHAPE]


def load_runtime(model: ModelVersion, settings: Any) -> SavedModelRuntime | LiteRTRuntime:
    """The runtime the settings ask for, loaded and checked; LiteRT falls back to the SavedModel if it cannot
    be built or disagrees with it."""
    saved_model = SavedModelRuntime(model, threads=settings.inference_threads, max_batch_size=settings.max_batch_size)
    if settings.runtime != "litert":
        return saved_model
    try:
        return LiteRTRuntime(saved_model, threads=settings.inference_threads, max_batch_size=settings.max_batch_size)
    except LiteRTUnavailable as error:
        logger.warning("the LiteRT runtime is not used, serving with the SavedModel signature instead: %s", error)
        return saved_model


class SavedModelRuntime:
    """A loaded, checked SavedModel version; `classify` is thread-safe and takes any batch size.

    Batches are padded up to a few sizes (1, 2, 3, 4, 6, 8, 12, ... up to the largest batch): every distinct
    input shape costs oneDNN ~0.6 MB of kernels and a first slow call, so a dozen sizes, all warmed up, serve in
    45 MB less than 64 would, for at most a third more arithmetic on a padded batch.
    """

    name = "savedmodel"

    def __init__(self, model: ModelVersion, *, threads: int = 1, max_batch_size: int = 64) -> None:
        self.model = model
        self.batch_sizes = padded_batch_sizes(max_batch_size)
        configure_threads(threads)
        try:
            self._saved_model = tf.saved_model.load(str(model.path))
        except Exception as error:  # TensorFlow raises many types for a broken SavedModel.
            raise ModelLoadError(model.path, f"not a loadable SavedModel: {_first_line(error)}") from None
        self._signature = _checked_signature(self._saved_model, model.path)
        _check_parameter_count(self._signature.variables, model)

    def classify(self, pixels: np.ndarray) -> np.ndarray:
        """float32 pixels (n, 28, 28) in [0, 1], MNIST polarity → float32 probabilities (n, 10)."""
        count = len(pixels)
        padded_size = next((size for size in self.batch_sizes if size >= count), count)
        pixels = pixels[..., np.newaxis]
        if padded_size > count:
            pixels = np.concatenate([pixels, np.zeros((padded_size - count, 28, 28, 1), dtype=np.float32)])
        return self._signature(**{INPUT_NAME: tf.constant(pixels)})[OUTPUT_NAME].numpy()[:count]

    def warm_up(self) -> None:
        """Run every batch size the server will use once, and check the answers are probabilities."""
        for size in self.batch_sizes:
            probabilities = self.classify(np.zeros((size, 28, 28), dtype=np.float32))
            if probabilities.shape != (size, 10) or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
                raise ModelLoadError(
                    self.model.path, f"warm-up gave {probabilities.shape} rows that are not probabilities"
                )


def padded_batch_sizes(largest: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, ...: powers of two and one and a half times them, up to `largest`."""
    sizes = {largest}
    power = 1
    while power <= largest:
        sizes.update(size for size in (power, power * 3 // 2) if 0 < size <= largest)
        power *= 2
    return sorted(sizes)


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


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class LiteRTUnavailable(Exception):
    """The SavedModel could not be converted to LiteRT, or the conversion does not agree with it."""


class LiteRTRuntime:
    """The same SavedModel converted to LiteRT (TFLite) at load time, for its far smaller per-call overhead.

    An interpreter re-plans its memory whenever its input shape changes, so there is one interpreter per
    power-of-two batch size; a batch runs as the sum of those sizes (37 = 32 + 4 + 1), never padded.
    Interpreters are not thread-safe: the batcher calls `classify` from its single inference thread only.
    """

    name = "litert"
    tolerance = 1e-5

    def __init__(self, saved_model: SavedModelRuntime, *, threads: int, max_batch_size: int) -> None:
        self.model = saved_model.model
        try:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(self.model.path), signature_keys=[SIGNATURE_NAME])
            flatbuffer = converter.convert()
            interpreter_class = _interpreter_class()
            self._runners = {
                size: _fixed_size_runner(interpreter_class, flatbuffer, size, threads)
                for size in _powers_of_two_up_to(max_batch_size)
            }
        except Exception as error:  # conversion raises many types; any of them means "use the SavedModel"
            raise LiteRTUnavailable(f"conversion failed: {_first_line(error)}") from None
        self._check_agreement(saved_model)

    def classify(self, pixels: np.ndarray) -> np.ndarray:
        pixels = pixels[..., np.newaxis]
        results = []
        start = 0
        for size in _decompose(len(pixels), max(self._runners)):
            results.append(self._runners[size](**{INPUT_NAME: pixels[start : start + size]})[OUTPUT_NAME])
            start += size
        return results[0] if len(results) == 1 else np.concatenate(results)

    def warm_up(self) -> None:
        for size in self._runners:
            self.classify(np.zeros((size, 28, 28), dtype=np.float32))

    def _check_agreement(self, saved_model: SavedModelRuntime) -> None:
        """The converted model must give the SavedModel's answers on a probe batch, or it is not used."""
        probe = np.random.default_rng(0).random(size=(max(self._runners) + 3, 28, 28), dtype=np.float32)
        probe[:8] = probe[:8] * (probe[:8] > 0.8)  # a few sparse, digit-like images beside the noise
        expected = saved_model.classify(probe)
        converted = self.classify(probe)
        difference = float(np.max(np.abs(expected - converted)))
        same_digits = bool(np.array_equal(expected.argmax(axis=1), converted.argmax(axis=1)))
        if difference > self.tolerance or not same_digits:
            raise LiteRTUnavailable(
                f"the converted model disagrees with the SavedModel (max difference {difference:.1e}, "
                f"same digits: {same_digits})"
            )


def _interpreter_class() -> Any:
    """LiteRT's own package when installed; TensorFlow's built-in (deprecated) interpreter otherwise."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter
    return Interpreter


def _fixed_size_runner(interpreter_class: Any, flatbuffer: bytes, size: int, threads: int) -> Any:
    interpreter = interpreter_class(model_content=flatbuffer, num_threads=threads or None)
    input_index = interpreter.get_signature_runner(SIGNATURE_NAME).get_input_details()[INPUT_NAME]["index"]
    interpreter.resize_tensor_input(input_index, [size, 28, 28, 1], strict=False)
    interpreter.allocate_tensors()
    return interpreter.get_signature_runner(SIGNATURE_NAME)


def _powers_of_two_up_to(limit: int) -> list[int]:
    sizes = [1]
    while sizes[-1] * 2 <= limit:
        sizes.append(sizes[-1] * 2)
    return sizes


def _decompose(count: int, largest: int) -> list[int]:
    """count as a sum of powers of two, the largest first: 37 → [32, 4, 1]; 130 with largest 64 → [64, 64, 2]."""
    sizes = []
    while count:
        size = largest
        while size > count:
            size //= 2
        sizes.append(size)
        count -= size
    return sizes
