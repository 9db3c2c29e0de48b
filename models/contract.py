"""The repository's contract, shared by the training job that writes versions, the service that serves them and
the benchmarks that read them. Plain Python, no TensorFlow: the service imports this, never the training job.

A model is a folder of the repository; a version is a sub-folder named by a positive integer (TF Serving's rule:
`1/`, `2/`, ..., `0/`, `v2/` and `.tmp-*` are not versions), holding a SavedModel and, in `assets.extra/`, the
model card that `model_card.schema.json` describes. The training job writes a version under a `.tmp-` name and
renames it into place, so a version folder is complete the moment its name appears.
"""

from __future__ import annotations

from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent
CARD_SCHEMA_FILE = "model_card.schema.json"
EXTRA_FOLDER = "assets.extra"
CARD_FILE = "model_card.json"
CARD_PATH = Path(EXTRA_FOLDER) / CARD_FILE
TEMPORARY_PREFIX = ".tmp-"

# The SavedModel's serving signature: what TF Serving, KServe and this service call. A batch of 28x28 pixels
# scaled to [0, 1] in MNIST polarity (white digit on black) in; a softmax over the digits 0-9 out. -1 is the batch.
SIGNATURE_NAME = "serving_default"
INPUT_NAME = "image"
INPUT_SHAPE = (-1, 28, 28, 1)
OUTPUT_NAME = "probabilities"
OUTPUT_SHAPE = (-1, 10)
METHOD_NAME = "tensorflow/serving/predict"
# A second signature: the same input, and each convolution's and pooling's output by layer name (the card lists
# them under `feature_maps`). Versions exported before it have none.
FEATURE_MAPS_SIGNATURE = "feature_maps"
# A third signature, in versions that can tell a digit from anything else: the same input, and both the
# (calibrated) `probabilities` and a raw `score` (higher = more digit-like; the card's `digit_check` says which
# score it is and maps it to digit_score). The converted LiteRT and ONNX models are this signature when it exists.
DIGIT_CHECK_SIGNATURE = "digit_check"
SCORE_NAME = "score"
# The serving signature as a LiteRT (TFLite) model, checked against the SavedModel at export (the card's `litert`).
LITERT_PATH = Path(EXTRA_FOLDER) / "model.tflite"
# Its ONNX copy (ONNX Runtime), checked the same way.
ONNX_PATH = Path(EXTRA_FOLDER) / "model.onnx"


def version_number(name: str) -> int | None:
    """The version a folder name stands for (`"12"` → 12), or None when the name is not a version."""
    if not (name.isascii() and name.isdigit()):
        return None
    number = int(name)
    return number if number > 0 else None


def version_numbers(model_folder: Path) -> list[int]:
    """The versions in a model folder, lowest first; [] when the folder does not exist."""
    try:
        entries = list(model_folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(number for entry in entries if (number := version_number(entry.name)) is not None and entry.is_dir())


def is_model_folder(folder: Path) -> bool:
    """A folder of the repository that holds at least one version."""
    return folder.is_dir() and not folder.name.startswith(".") and bool(version_numbers(folder))
