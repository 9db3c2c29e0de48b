"""The ONNX runtime: the ONNX model that the export wrote beside the SavedModel, run by ONNX Runtime on the CPU,
without TensorFlow.

The file is the one the card names, with the SHA-256 it records; the export checked it against the SavedModel
(max difference ≤ 1e-5, the same digit on every test image). A version exported before the export wrote that file
is served by the SavedModel runtime instead, with a warning line, when TensorFlow is installed; without TensorFlow
it cannot be served, and says so. One session serves every batch size (ONNX Runtime plans its memory
per run from an arena, so a new size costs no re-planning); it runs on the batcher's single inference thread.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from models.contract import INPUT_NAME, ONNX_PATH
from service.repository import ModelLoadError, ModelVersion
from service.runtimes import (
    Runtime,
    RuntimeOptions,
    check_warm_up,
    powers_of_two_up_to,
    read_exported_model,
    served_signature,
    side_by_side,
    tensorflow_installed,
)

logger = logging.getLogger("service.runtime")


def load_onnx(model: ModelVersion, options: RuntimeOptions) -> Runtime:
    """The version's exported ONNX model; for an older version without one, the SavedModel (or a clear refusal)."""
    if model.card.get("onnx") is not None:
        return OnnxRuntime(model, options)
    if not tensorflow_installed():
        raise ModelLoadError(
            model.path / ONNX_PATH,
            "this version has no ONNX model (it was exported before the export wrote one), and TensorFlow, which "
            "would serve its SavedModel instead, is not installed; re-export it (python -m training.reexport)",
        )
    from service.runtimes.savedmodel import SavedModelRuntime

    logger.warning(
        "%s version %d has no ONNX model (exported before the export wrote one): serving its SavedModel signature "
        "instead; re-export it (python -m training.reexport) to serve it with ONNX Runtime",
        model.name,
        model.version,
    )
    return SavedModelRuntime(model, options)


class OnnxRuntime:
    name = "onnx"

    def __init__(self, model: ModelVersion, options: RuntimeOptions) -> None:
        self.model = model
        self.max_batch_size = options.max_batch_size
        path, serialized = read_exported_model(model, "onnx", "ONNX")
        _, self._outputs = served_signature(model)
        self._session = _session(serialized, options.threads, path, self._outputs)

    def classify(self, pixels: np.ndarray) -> np.ndarray:
        """float32 pixels (n, 28, 28) in [0, 1], MNIST polarity → float32 probabilities (n, 10), and the raw
        digit score as an 11th column when the version has one."""
        return side_by_side(self._session.run(self._outputs, {INPUT_NAME: pixels[..., np.newaxis]}))

    def warm_up(self) -> None:
        for size in powers_of_two_up_to(self.max_batch_size):
            check_warm_up(
                self.model, self.model.path / ONNX_PATH, self.classify(np.zeros((size, 28, 28), np.float32)), size
            )


def _session(serialized: bytes, threads: int, path: Any, expected_outputs: list[str]) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are not ours to fix
    try:
        session = onnxruntime.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime raises its own exception types for malformed models
        raise ModelLoadError(path, f"not a usable ONNX model: {str(error).splitlines()[0]}") from None
    inputs = [(tensor.name, tensor.shape) for tensor in session.get_inputs()]
    outputs = [tensor.name for tensor in session.get_outputs()]
    if [name for name, _ in inputs] != [INPUT_NAME] or sorted(outputs) != sorted(expected_outputs):
        raise ModelLoadError(
            path, f"its inputs are {inputs} and outputs {outputs}; expected image → {', '.join(expected_outputs)}"
        )
    return session
