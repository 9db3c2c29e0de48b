"""The model runtimes on the tiny model: the SavedModel signature, and LiteRT converted from it at load time."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.core import unit_pixels
from service.repository import locate_model
from service.runtime import LiteRTRuntime, SavedModelRuntime, _decompose, load_runtime


def tiny_settings(repository: Path, **overrides: object) -> Settings:
    return Settings(model_dir=repository / "tiny", **overrides)


def load(repository: Path, **overrides: object) -> SavedModelRuntime | LiteRTRuntime:
    settings = tiny_settings(repository, **overrides)
    return load_runtime(locate_model(settings.model_dir, None, settings.card_schema_path()), settings)


def test_savedmodel_runtime_classifies_any_batch_size(tiny_model_repository: Path, mnist_sample: dict) -> None:
    runtime = load(tiny_model_repository)
    assert runtime.name == "savedmodel"
    for size in (1, 7, 64, 130):
        probabilities = runtime.classify(unit_pixels(mnist_sample["x_test"][:size]))
        assert probabilities.shape == (size, 10) and probabilities.dtype == np.float32
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_litert_runtime_agrees_with_the_savedmodel(tiny_model_repository: Path, mnist_sample: dict) -> None:
    litert = load(tiny_model_repository, runtime="litert", max_batch_size=16)
    saved = load(tiny_model_repository)
    assert litert.name == "litert"
    for size in (1, 5, 16, 37):
        images = unit_pixels(mnist_sample["x_test"][:size])
        np.testing.assert_allclose(litert.classify(images), saved.classify(images), atol=1e-5)


def test_litert_runtime_falls_back_when_conversion_fails(
    tiny_model_repository: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import tensorflow as tf

    def refuse(*args: object, **kwargs: object) -> object:
        raise ValueError("no converter today")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", refuse)
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        runtime = load(tiny_model_repository, runtime="litert")
    assert runtime.name == "savedmodel"
    assert "no converter today" in caplog.text


def test_decompose_splits_batches_into_powers_of_two() -> None:
    assert _decompose(37, 64) == [32, 4, 1]
    assert _decompose(130, 64) == [64, 64, 2]
    assert _decompose(1, 64) == [1]
    assert sum(_decompose(255, 16)) == 255
