"""The LiteRT runtime: the LiteRT (TFLite) model that the export wrote beside the SavedModel, run by ai-edge-litert,
without TensorFlow (the slim image has none).

The file is the one the card names, with the SHA-256 it records; the export checked it against the SavedModel
(max difference ≤ 1e-5, the same digit on every test image). A version exported before the export wrote that file
is converted at load instead, which needs TensorFlow: the conversion is checked against the SavedModel on a probe
batch, and the server falls back to the SavedModel (with a warning line) if it fails or disagrees. Without
TensorFlow such a version cannot be served by this runtime, and says so.

An interpreter re-plans its memory whenever its input shape changes, so there is one interpreter per power-of-two
batch size; a batch runs as the sum of those sizes (37 = 32 + 4 + 1), never padded. Interpreters are not
thread-safe: the batcher calls `classify` from its single inference thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from models.contract import INPUT_NAME, LITERT_PATH
from service.repository import ModelLoadError, ModelVersion
from service.runtimes import (
    Runtime,
    RuntimeOptions,
    check_warm_up,
    decompose,
    powers_of_two_up_to,
    read_exported_model,
    served_signature,
    side_by_side,
    tensorflow_installed,
)

logger = logging.getLogger("service.runtime")

Runner = Callable[..., dict[str, np.ndarray]]


class LiteRTUnavailable(Exception):
    """The SavedModel could not be converted to LiteRT, or the conversion does not agree with it."""


def load_litert(model: ModelVersion, options: RuntimeOptions) -> Runtime:
    """The version's exported LiteRT model; for an older version, a conversion at load (or the SavedModel)."""
    if model.card.get("litert") is not None:
        _, flatbuffer = read_exported_model(model, "litert", "LiteRT")
        return LiteRTRuntime(model, flatbuffer, options)
    if not tensorflow_installed():
        raise ModelLoadError(
            model.path / LITERT_PATH,
            "this version has no LiteRT model (it was exported before the export wrote one), and TensorFlow, which "
            "would convert its SavedModel, is not installed; re-export it (python -m training.reexport) or serve it "
            "with the savedmodel runtime",
        )
    from service.runtimes.savedmodel import SavedModelRuntime, convert_to_litert, first_line

    saved_model = SavedModelRuntime(model, options)
    try:
        try:
            runtime = LiteRTRuntime(model, convert_to_litert(model), options)
        except ModelLoadError as error:
            raise LiteRTUnavailable(error.problem) from None
        except Exception as error:  # the converter raises many types; any of them means "use the SavedModel"
            raise LiteRTUnavailable(f"conversion failed: {first_line(error)}") from None
        runtime.check_agreement(saved_model)
    except LiteRTUnavailable as error:
        logger.warning("the LiteRT runtime is not used, serving with the SavedModel signature instead: %s", error)
        return saved_model
    return runtime


class LiteRTRuntime:
    name = "litert"
    tolerance = 1e-5

    def __init__(self, model: ModelVersion, flatbuffer: bytes, options: RuntimeOptions) -> None:
        self.model = model
        interpreter_class = _interpreter_class()
        signature, self._outputs = served_signature(model)
        try:
            self._runners = {
                size: _fixed_size_runner(interpreter_class, flatbuffer, size, options.threads, signature, self._outputs)
                for size in powers_of_two_up_to(options.max_batch_size)
            }
        except (KeyError, ValueError, RuntimeError) as error:
            raise ModelLoadError(model.path / LITERT_PATH, f"not a usable LiteRT model: {error}") from None

    def classify(self, pixels: np.ndarray) -> np.ndarray:
        """float32 pixels (n, 28, 28) in [0, 1], MNIST polarity → float32 probabilities (n, 10), and the raw
        digit score as an 11th column when the version has one."""
        batch = pixels[..., np.newaxis]
        results = []
        start = 0
        for size in decompose(len(batch), max(self._runners)):
            outputs = self._runners[size](**{INPUT_NAME: batch[start : start + size]})
            results.append(side_by_side([outputs[name] for name in self._outputs]))
            start += size
        return results[0] if len(results) == 1 else np.concatenate(results)

    def warm_up(self) -> None:
        for size in self._runners:
            answer = self.classify(np.zeros((size, 28, 28), dtype=np.float32))
            check_warm_up(self.model, self.model.path / LITERT_PATH, answer, size)

    def check_agreement(self, saved_model: Runtime) -> None:
        """A conversion made at load must give the SavedModel's answers on a probe batch, or it is not used."""
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
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter


def _fixed_size_runner(
    interpreter_class: Any, flatbuffer: bytes, size: int, threads: int, name: str, outputs: list[str]
) -> Runner:
    interpreter = interpreter_class(model_content=flatbuffer, num_threads=threads or None)
    signature = interpreter.get_signature_list().get(name)
    if signature is None or signature["inputs"] != [INPUT_NAME] or sorted(signature["outputs"]) != sorted(outputs):
        raise ValueError(f"its {name} signature is {signature}; expected image → {', '.join(outputs)}")
    input_index = interpreter.get_signature_runner(name).get_input_details()[INPUT_NAME]["index"]
    interpreter.resize_tensor_input(input_index, [size, 28, 28, 1], strict=False)
    interpreter.allocate_tensors()
    runner: Runner = interpreter.get_signature_runner(name)
    return runner
