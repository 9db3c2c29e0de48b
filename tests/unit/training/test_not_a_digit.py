"""python -m training.not_a_digit on the tiny model: a new version that is calibrated and says whether an input is
a digit, in every signature and every converted copy, with a card that records how; and the synthetic non-digits
it learns from, which never come from the evaluation's sources."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import keras
import numpy as np
import tensorflow as tf

from bench import nondigits
from models import digit_check
from models.contract import CARD_PATH
from training import outliers
from training.export import litert_runner, model_logits, onnx_runner


def card_of(version: Path) -> dict:
    return json.loads((version / CARD_PATH).read_text())


def test_the_new_version_records_calibration_and_the_digit_check(tiny_checked_repository: Path) -> None:
    version = tiny_checked_repository / "tiny" / "2"
    card = card_of(version)
    jsonschema.validate(card, json.loads((tiny_checked_repository / "model_card.schema.json").read_text()))
    assert card["architecture"]["total_params"] == 93_322  # the architecture is untouched
    assert card["fine_tuning"]["from_version"] == 1 and card["fine_tuning"]["settings"]["outlier_count"] == 400
    calibration = card["calibration"]
    assert calibration["temperature"] > 0 and calibration["bins"] == 15
    assert "calibrated" in card["signature"]["output"]["description"]
    assert "which version 1 was trained on" in calibration["fitted_on"]  # the seed recipe held nothing out
    assert sum(row[2] for row in calibration["reliability_after"]) == card["data"]["test_count"]
    assert (version / calibration["reliability_diagram"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    check = card["digit_check"]
    assert check["score"] == "energy" and check["signature"] == "digit_check"
    assert check["quantiles"] == sorted(check["quantiles"]) and len(check["quantiles"]) == digit_check.QUANTILE_COUNT
    assert 0 < check["validation_flagged"] <= 0.009 and 0 <= check["threshold"] <= 1
    assert card_of(tiny_checked_repository / "tiny" / "1").get("digit_check") is None  # the old one is untouched


def test_the_signatures_serve_calibrated_probabilities_and_the_score(
    tiny_checked_repository: Path, mnist_sample: dict
) -> None:
    version = tiny_checked_repository / "tiny" / "2"
    temperature = card_of(version)["calibration"]["temperature"]
    images = (mnist_sample["x_test"][:64].astype(np.float32) / 255)[..., np.newaxis]
    logits = model_logits(keras.models.load_model(version / "assets.extra" / "model.keras"), images)
    loaded = tf.saved_model.load(str(version))
    served = loaded.signatures["serving_default"](image=tf.constant(images))
    assert list(served) == ["probabilities"]  # TF Serving clients see what they always saw
    np.testing.assert_allclose(served["probabilities"].numpy(), digit_check.softmax(logits, temperature), atol=1e-5)
    checked = loaded.signatures["digit_check"](image=tf.constant(images))
    np.testing.assert_allclose(checked["probabilities"].numpy(), digit_check.softmax(logits, temperature), atol=1e-5)
    np.testing.assert_allclose(
        checked["score"].numpy(), digit_check.raw_score("energy", logits, temperature), rtol=1e-5, atol=1e-5
    )


def test_the_converted_copies_are_the_digit_check_signature(tiny_checked_repository: Path, mnist_sample: dict) -> None:
    version = tiny_checked_repository / "tiny" / "2"
    images = (mnist_sample["x_test"][:20].astype(np.float32) / 255)[..., np.newaxis]
    checked = tf.saved_model.load(str(version)).signatures["digit_check"](image=tf.constant(images))
    expected = np.concatenate([checked["probabilities"].numpy(), checked["score"].numpy()[:, None]], axis=1)
    litert = litert_runner((version / "assets.extra" / "model.tflite").read_bytes(), "digit_check")
    onnx = onnx_runner((version / "assets.extra" / "model.onnx").read_bytes())
    for run in (litert, onnx):
        np.testing.assert_allclose(run(images), expected, rtol=1e-5, atol=1e-5)


def test_outlier_images_are_normalised_non_digits_and_repeat_with_their_seed() -> None:
    first = outliers.outlier_images(40, seed=3)
    assert first.shape == (40, 28, 28) and first.dtype == np.uint8
    assert np.array_equal(first, outliers.outlier_images(40, seed=3))
    widths = (first > 64).any(axis=1).sum(axis=1)
    assert (widths > outliers.NARROWEST_INK_COLUMNS).all()  # nothing as narrow as a 1


def test_training_never_sees_the_evaluation_sources() -> None:
    training_fonts = {path.name for path in outliers.training_fonts()}
    evaluation_fonts = {path.name for path in nondigits.evaluation_fonts()}
    assert training_fonts and evaluation_fonts and not training_fonts & evaluation_fonts
    for lookalike in nondigits.DIGIT_LOOKALIKES:
        assert lookalike not in outliers.CHARACTERS and lookalike not in nondigits.LETTERS + nondigits.SYMBOLS
