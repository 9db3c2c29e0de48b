"""Every knob of the service, in one pydantic-settings class: flags, environment variables (DIGIT_SERVE_*), defaults."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.contract import CARD_SCHEMA_FILE
from service.policy import SERVING_FILE

MEBIBYTE = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIGIT_SERVE_", protected_namespaces=())

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in containers).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    grpc_port: int = Field(
        8081, ge=0, le=65535, description="TCP port of the gRPC Open Inference Protocol (KServe's default; 0: off)."
    )
    model_repository: Path = Field(
        Path("models"), description="The model repository, served whole: every sub-folder holding a version is a model."
    )
    default_model: str = Field("mnist_convnet", min_length=1, description="The model /predict serves unless told.")
    model_dir: Path | None = Field(
        None,
        description="Serve only this model folder of a repository (<repository>/<name>/); it is the default model.",
    )
    model_version: int | None = Field(
        None, ge=1, description="Serve only this version of the default model (policy: specific = [N])."
    )
    poll_seconds: float = Field(
        2.0, ge=0, description="How often the repository is scanned for new, changed and deleted versions (0: never)."
    )
    serving_config: Path | None = Field(
        None, description="The version policies and labels; default: serving.toml in the repository."
    )
    card_schema: Path | None = Field(
        None, description="JSON Schema of the model card; default: model_card.schema.json in the repository."
    )
    max_body_bytes: int = Field(4 * MEBIBYTE, ge=1024, description="Largest request body accepted (413 above).")
    max_images_per_request: int = Field(256, ge=1, description="Most images in one /predict request (422 above).")
    max_image_pixels: int = Field(
        40_000_000, ge=784, description="Largest decoded image, width x height, checked from the header (413 above)."
    )
    max_request_pixels: int = Field(
        100_000_000,
        ge=784,
        description="Most pixels one request's image files may decode to, summed from their headers (413 above).",
    )
    max_decode_bytes: int = Field(
        384 * MEBIBYTE,
        ge=MEBIBYTE,
        description="Most memory one image may take to decode, estimated from its header (413 above).",
    )
    decode_backlog_pixels: int = Field(
        400_000_000,
        ge=784,
        description="Most pixels waiting to be decoded, all requests together; beyond it: 503 overloaded.",
    )
    max_concurrent_requests: int = Field(
        256, ge=1, description="Most inference requests in flight at once; beyond it: 503 overloaded."
    )
    request_timeout_ms: float = Field(
        30_000,
        ge=0,
        description="A request that has waited this long is answered 504 and never run (0: no deadline); "
        "clients may ask for less with X-Request-Timeout-Ms.",
    )
    max_url_bytes: int = Field(16 * 1024, ge=256, description="Longest request URL (414 above).")
    max_header_bytes: int = Field(32 * 1024, ge=1024, description="Largest request line and headers (431 above).")
    idle_timeout_seconds: float = Field(
        5.0, gt=0, description="A connection that sends no request for this long is closed."
    )
    header_timeout_seconds: float = Field(5.0, gt=0, description="Time to send a request's headers (408 after).")
    body_timeout_seconds: float = Field(
        10.0, gt=0, description="Time to send a request's body, plus a second per BODY_MIN_RATE bytes (408 after)."
    )
    body_min_rate: float = Field(16 * 1024, gt=0, description="Bytes per second a long upload must keep up.")
    max_batch_size: int = Field(64, ge=1, description="Most images the batcher runs in one model call.")
    batch_timeout_ms: float = Field(
        0.0, ge=0, description="How long a partial batch waits for more requests before it runs (0: never waits)."
    )
    queue_capacity: int = Field(8192, ge=1, description="Most images waiting for the model; beyond it: 503.")
    runtime: Literal["savedmodel", "litert", "onnx"] = Field("savedmodel", description="What runs the model.")
    digit_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Overrides every version's own \"not a digit\" threshold (its card's): an input whose "
        "digit_score (the share of MNIST validation digits less digit-like than it) is below this is is_digit false.",
    )
    decode_threads: int = Field(1, ge=1, description="Threads that decode and normalise image files.")
    inference_threads: int = Field(
        1, ge=0, description="The runtime's intra-op threads for inference (0: the library decides)."
    )
    replica_name: str = Field(
        default_factory=socket.gethostname, description="Named in every response's X-Served-By header."
    )
    graceful_timeout_seconds: int = Field(10, ge=0, description="How long shutdown waits for requests in flight.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info")
    log_format: Literal["text", "json"] = Field(
        "text", description="text for a terminal; json (one object per line) for a log pipeline (the images' default)."
    )
    access_log: bool = Field(False, description="Log one line per inference request, with its timings.")
    metrics: bool = Field(True, description="Prometheus metrics at /metrics (false: not collected, 404).")

    def repository_path(self) -> Path:
        """The repository: --model-dir's parent folder when one model is named, else --model-repository."""
        return self.model_dir.parent if self.model_dir is not None else self.model_repository

    def default_model_name(self) -> str:
        return self.model_dir.resolve().name if self.model_dir is not None else self.default_model

    def card_schema_path(self) -> Path:
        return self.card_schema or self.repository_path() / CARD_SCHEMA_FILE

    def serving_config_path(self) -> Path:
        return self.serving_config or self.repository_path() / SERVING_FILE
