"""The runtimes on the tiny model, each held to one contract (service/runtimes/): any batch size, probabilities
that sum to one, warm-up, and the same answers as the SavedModel; plus what is particular to each."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.contract import CARD_PATH
from service.core import unit_pixels
from service.repository import ModelLoadError, locate_model
from service.runtimes import RUNTIMES, Runtime, RuntimeOptions, decompose, load_runtime
from service.runtimes.savedmodel import SavedModelRuntime


def load(repository: Path, runtime: str, max_batch_size: int = 64, version: int | None = None) -> Runtime:
    model = locate_model(repository / "tiny", version, repository / "model_card.schema.json")
    return load_runtime(model, runtime, RuntimeOptions(threads=1, max_batch_size=max_batch_size))


@pytest.mark.parametrize("name", RUNTIMES)
def test_runtime_contract_any_batch_size_gives_probabilities(
    tiny_model_repository: Path, mnist_sample: dict, name: str
) -> None:
    runtime = load(tiny_model_repository, name, max_batch_size=16)
    assert runtime.name == name
    runtime.warm_up()
    for size in (1, 5, 16, 37):
        probabilities = runtime.classify(unit_pixels(mnist_sample["x_test"][:size]))
        assert probabilities.shape == (size, 10) and probabilities.dtype == np.float32
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", RUNTIMES)
def test_runtime_contract_agrees_with_the_savedmodel(
    tiny_model_repository: Path, mnist_sample: dict, name: str
) -> None:
    images = unit_pixels(mnist_sample["x_test"][:100])
    reference = load(tiny_model_repository, "savedmodel").classify(images)
    np.testing.assert_allclose(load(tiny_model_repository, name).classify(images), reference, atol=1e-5)


@pytest.mark.parametrize("name", RUNTIMES)
def test_runtime_contract_a_version_with_a_digit_check_answers_its_score_too(
    tiny_checked_repository: Path, mnist_sample: dict, name: str
) -> None:
    runtime = load(tiny_checked_repository, name, max_batch_size=16, version=2)
    runtime.warm_up()
    reference = load(tiny_checked_repository, "savedmodel", version=2)
    for size in (1, 7, 37):
        images = unit_pixels(mnist_sample["x_test"][:size])
        answer = runtime.classify(images)
        assert answer.shape == (size, 11) and answer.dtype == np.float32
        np.testing.assert_allclose(answer[:, :10].sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(answer, reference.classify(images), rtol=1e-5, atol=1e-5)
    noise = np.random.default_rng(0).random((8, 28, 28), dtype=np.float32)
    digits = unit_pixels(mnist_sample["x_test"][:8])
    assert np.median(runtime.classify(noise)[:, 10]) < np.median(runtime.classify(digits)[:, 10])


def test_litert_runtime_loads_the_exported_file_without_converting(
    tiny_model_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.runtimes import savedmodel

    def no_conversion(*_: object) -> bytes:
        raise AssertionError("the exported LiteRT model is used as it is")

    monkeypatch.setattr(savedmodel, "convert_to_litert", no_conversion)
    assert load(tiny_model_repository, "litert").name == "litert"


@pytest.mark.parametrize("name", ["litert", "onnx"])
def test_converted_runtimes_refuse_a_file_that_is_not_the_cards(
    tiny_model_repository: Path, tmp_path: Path, name: str
) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(tiny_model_repository, repository)
    card = json.loads((repository / "tiny" / "1" / CARD_PATH).read_text())
    converted = repository / "tiny" / "1" / card[name]["file"]
    converted.write_bytes(converted.read_bytes()[:-8] + b"tampered")
    with pytest.raises(ModelLoadError, match="SHA-256 is not the one the card records"):
        load(repository, name)


def without_converted_file(tiny_model_repository: Path, tmp_path: Path, key: str = "litert") -> Path:
    """A copy of the repository whose version predates the exported LiteRT (or ONNX) file."""
    repository = tmp_path / "repository"
    shutil.copytree(tiny_model_repository, repository)
    card_path = repository / "tiny" / "1" / CARD_PATH
    card = json.loads(card_path.read_text())
    (repository / "tiny" / "1" / card.pop(key)["file"]).unlink()
    card_path.write_text(json.dumps(card))
    return repository


def test_onnx_runtime_serves_an_older_version_with_the_savedmodel_and_says_so(
    tiny_model_repository: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        runtime = load(without_converted_file(tiny_model_repository, tmp_path, "onnx"), "onnx")
    assert isinstance(runtime, SavedModelRuntime)
    assert "has no ONNX model" in caplog.text and "re-export it" in caplog.text


def test_litert_runtime_converts_an_older_version_at_load(tiny_model_repository: Path, tmp_path: Path) -> None:
    assert load(without_converted_file(tiny_model_repository, tmp_path), "litert").name == "litert"


def test_litert_runtime_falls_back_when_the_conversion_fails(
    tiny_model_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import tensorflow as tf

    def refuse(*args: object, **kwargs: object) -> object:
        raise ValueError("no converter today")

    repository = without_converted_file(tiny_model_repository, tmp_path)
    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", refuse)
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        runtime = load(repository, "litert")
    assert isinstance(runtime, SavedModelRuntime)
    assert "no converter today" in caplog.text


def test_decompose_splits_batches_into_powers_of_two() -> None:
    assert decompose(37, 64) == [32, 4, 1]
    assert decompose(130, 64) == [64, 64, 2]
