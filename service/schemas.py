"""Typed request and response bodies. They document the API in /docs; the hot path builds the same shapes
directly (see routes.py), and tests check that every response validates against these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SIDE = 28
Pixel = Annotated[int, Field(ge=0, le=255)]
Row = Annotated[list[Pixel], Field(min_length=SIDE, max_length=SIDE)]
NestedPixels = Annotated[list[Row], Field(min_length=SIDE, max_length=SIDE, description="28 rows of 28 pixels")]
FlatPixels = Annotated[list[Pixel], Field(min_length=SIDE * SIDE, max_length=SIDE * SIDE, description="784 pixels")]
Pixels = NestedPixels | FlatPixels

EXAMPLE_PROBABILITIES = [0.0, 0.0, 0.0001, 0.0003, 0.0, 0.0, 0.0, 0.998, 0.0, 0.0016]
# The first digit of the MNIST test set, a 7: white on black, one row of 28 pixels per hex string.
SEVEN_ROWS_HEX = (
    "00000000000000000000000000000000000000000000000000000000",
    "00000000000000000000000000000000000000000000000000000000",
    "00000000000000000000000000000000000000000000000000000000",
    "00000000000000000000000000000000000000000000000000000000",
    "00000000000000000000000000000000000000000000000000000000",
    "00000000000000000000000000000000000000000000000000000000",
    "00000000000000000000000000000000000000000000000000000000",
    "00000000000054b99f973c2400000000000000000000000000000000",
    "000000000000defefefefef1c6c6c6c6c6c6c6c6aa34000000000000",
    "00000000000043724872a3e3fee1fefefefae5fefe8c000000000000",
    "000000000000000000000011420e4343433b15ecfe6a000000000000",
    "00000000000000000000000000000000000053fdd112000000000000",
    "000000000000000000000000000000000016e9ff5300000000000000",
    "000000000000000000000000000000000081feee2c00000000000000",
    "000000000000000000000000000000003bf9fe3e0000000000000000",
    "0000000000000000000000000000000085febb050000000000000000",
    "00000000000000000000000000000009cdf83a000000000000000000",
    "0000000000000000000000000000007efeb600000000000000000000",
    "00000000000000000000000000004bfbf03900000000000000000000",
    "0000000000000000000000000013ddfea60000000000000000000000",
    "00000000000000000000000003cbfedb230000000000000000000000",
    "00000000000000000000000026fefe4d000000000000000000000000",
    "00000000000000000000001fe0fe7301000000000000000000000000",
    "000000000000000000000085fefe3400000000000000000000000000",
    "000000000000000000003df2fefe3400000000000000000000000000",
    "0000000000000000000079fefedb2800000000000000000000000000",
    "0000000000000000000079fecf120000000000000000000000000000",
    "00000000000000000000000000000000000000000000000000000000",
)
SEVEN: Any = [list(bytes.fromhex(row)) for row in SEVEN_ROWS_HEX]


class ModelInfo(BaseModel):
    name: str = Field(examples=["mnist_convnet"])
    version: int = Field(examples=[1])


class PixelsRequest(BaseModel):
    """One image as 28 rows of 28 integers 0-255 (or 784 flat), white digit on black, sent to the model as is."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"image": SEVEN}]})
    image: Pixels


class PixelsBatchRequest(BaseModel):
    """Several images in MNIST format; the response holds one prediction per image, in order."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"images": [SEVEN, SEVEN]}]})
    images: list[Pixels] = Field(min_length=1, description="At most MAX_IMAGES_PER_REQUEST images (256).")


class FileRequest(BaseModel):
    """One image file (PNG, JPEG, GIF, BMP, WEBP), base64-encoded; a data: URL prefix is accepted."""

    model_config = ConfigDict(extra="forbid")
    image_b64: str = Field(min_length=1)


class FileBatchRequest(BaseModel):
    """Several base64 image files."""

    model_config = ConfigDict(extra="forbid")
    images_b64: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, description="At most MAX_IMAGES_PER_REQUEST files (256)."
    )


PredictJsonRequest = PixelsRequest | PixelsBatchRequest | FileRequest | FileBatchRequest


class FeatureMapOut(BaseModel):
    """One layer's output for the image, quantised to a byte per value, channel by channel."""

    layer: str = Field(description="The layer's name, as in /model/summary.", examples=["conv2d"])
    shape: list[int] = Field(description="(height, width, channels).", examples=[[26, 26, 32]])
    scale: list[float] = Field(description="Each channel's largest value: a value is byte / 255 * scale[channel].")
    data: str = Field(description="base64 of height x width x channels bytes, in that order (channels last).")


class Prediction(BaseModel):
    digit: int = Field(ge=0, le=9, examples=[7])
    confidence: float = Field(ge=0, le=1, description="The probability of `digit`.", examples=[0.998])
    probabilities: list[float] = Field(min_length=10, max_length=10, examples=[EXAMPLE_PROBABILITIES])
    input: str | None = Field(
        None,
        description="With `?include=input`: the normalised 28x28 image the model received (white digit on black), "
        "as a base64 PNG.",
    )
    feature_maps: list[FeatureMapOut] | None = Field(
        None,
        description="With `?include=feature_maps` (one image per request): each convolution's and pooling layer's "
        "output, in the model's order.",
    )
    is_digit: bool | None = Field(
        description="Whether the image looks like a digit at all (digit_score at or above the version's threshold); "
        "null for a version exported without a digit check (its /model/summary says so).",
        examples=[True],
    )
    digit_score: float | None = Field(
        ge=0,
        le=1,
        description="How digit-like the image is: the share of MNIST validation digits less digit-like than it "
        "(0.5: a typical digit; below 0.01 or so: not a digit). null without a digit check.",
        examples=[0.62],
    )


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model: ModelInfo
    request_id: str


class LayerSummary(BaseModel):
    name: str = Field(examples=["conv2d"])
    type: str = Field(description="The Keras layer class.", examples=["Conv2D"])
    output_shape: list[int | None] = Field(description="null for the batch axis.", examples=[[None, 26, 26, 32]])
    params: int = Field(examples=[320])


class TensorSummary(BaseModel):
    name: str
    dtype: str
    shape: list[int | None]
    description: str


class TrainingMetrics(BaseModel):
    test_accuracy: float
    test_loss: float
    recipe: str
    epochs_run: int
    best_epoch: int | None
    trained_at: str
    per_class: list[dict[str, Any]]


class CalibrationSummary(BaseModel):
    method: str = Field(examples=["temperature scaling"])
    temperature: float = Field(description="Served probabilities are softmax(logits / temperature).")
    test_ece_before: float = Field(description="Expected calibration error (15 bins) on MNIST test, uncalibrated.")
    test_ece_after: float = Field(description="The same for the served (calibrated) probabilities.")
    reliability_diagram: str = Field(description="The picture's URL.")


class DigitCheckSummary(BaseModel):
    available: bool = Field(description="Whether predictions carry is_digit and digit_score.")
    reason: str | None = Field(None, description="Why not, when not available.")
    score: str | None = Field(None, description="The raw score behind digit_score: energy or msp.")
    method: str | None = None
    threshold: float | None = Field(None, description="digit_score below this: is_digit false.")
    threshold_source: str | None = Field(None, examples=["card"])
    card_threshold: float | None = None
    validation_flagged: float | None = Field(None, description="Share of MNIST validation digits flagged.")
    test_flagged: float | None = Field(None, description="Share of MNIST test digits flagged (card threshold).")


class ModelSummary(BaseModel):
    model: ModelInfo
    architecture: str
    layers: list[LayerSummary]
    total_params: int = Field(examples=[93322])
    trainable_params: int
    non_trainable_params: int
    input: TensorSummary
    output: TensorSummary
    labels: list[str]
    metrics: TrainingMetrics
    calibration: CalibrationSummary | None = Field(
        description="null: the probabilities are the model's softmax, uncalibrated"
    )
    digit_check: DigitCheckSummary


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    ready: bool
    model: ModelInfo | None
    runtime: str | None
    uptime_seconds: float
    replica: str


class VersionStatusInfo(BaseModel):
    version: int = Field(examples=[1])
    state: Literal["LOADING", "AVAILABLE", "UNLOADING", "FAILED"] = Field(
        description="TF Serving's states: being loaded and warmed up; serving; draining before release; refused"
    )
    error: str | None = Field(description="Why the load failed (FAILED only)", examples=[None])
    warning: str | None = Field(description="e.g. its folder was deleted while it serves from memory")
    available_since: str | None = Field(description="When it started serving (UTC, ISO 8601)")
    test_accuracy: float | None = Field(description="From the model card", examples=[0.9921])
    runtime: str | None = Field(examples=["savedmodel"])


class ModelStatus(BaseModel):
    name: str = Field(examples=["mnist_convnet"])
    default: bool = Field(description="The model /predict serves when no model is named")
    policy: str | dict[str, Any] = Field(
        description='The version policy: "all", {"latest": N} or {"specific": [...]}', examples=[{"latest": 1}]
    )
    labels: dict[str, int] = Field(description="Version labels from serving.toml", examples=[{"stable": 1}])
    versions: list[VersionStatusInfo] = Field(description="The newest first")


class ModelsResponse(BaseModel):
    default_model: str = Field(examples=["mnist_convnet"])
    models: list[ModelStatus]


class ProbeResponse(BaseModel):
    status: Literal["alive", "ready"]


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_shape"])
    message: str = Field(examples=["image: expected a 28x28 image, got 27x28"])
    details: Any = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody
    request_id: str
