"""Export: a short real run exports a servable SavedModel, a valid card, and never a half-written version."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPOSITORY_ROOT, quiet_tensorflow_environment
from training.card import json_schema
from training.export import (
    ExportError,
    choose_version,
    convert_to_litert,
    convert_to_onnx,
    export_version,
    litert_runner,
    onnx_runner,
    read_card,
    write_saved_model,
)
from training.model import build_model

# Test images for the LiteRT check of exports made in these tests (the tiny model's run checked its own).
TEST_IMAGES = np.random.default_rng(5).integers(0, 256, size=(64, 28, 28), dtype=np.uint8)


def test_tiny_run_exports_a_servable_savedmodel(tiny_model_repository: Path, mnist_sample: dict) -> None:
    version = tiny_model_repository / "tiny" / "1"
    loaded = tf.saved_model.load(str(version))
    signature = loaded.signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["image"]
    assert signature.structured_input_signature[1]["image"].shape.as_list() == [None, 28, 28, 1]
    assert list(signature.structured_outputs) == ["probabilities"]
    images = (mnist_sample["x_test"][:32].astype("float32") / 255)[..., np.newaxis]
    served = signature(image=tf.constant(images))["probabilities"].numpy()
    keras_model = keras.models.load_model(version / "assets.extra" / "model.keras")
    np.testing.assert_allclose(served, keras_model.predict(images, verbose=0), atol=1e-5)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)


def test_tiny_run_card_validates_and_describes_the_run(tiny_model_repository: Path) -> None:
    card_path = tiny_model_repository / "tiny" / "1" / "assets.extra" / "model_card.json"
    card = json.loads(card_path.read_text())
    jsonschema.validate(card, json.loads((tiny_model_repository / "model_card.schema.json").read_text()))
    assert card["version"] == 1 and card["name"] == "tiny"
    assert card["architecture"]["total_params"] == 93_322
    assert card["training"]["recipe"] == "seed" and card["training"]["epochs_run"] == 1
    assert card["data"]["source"] == "npz" and card["data"]["test_count"] == 500
    matrix = np.array(card["evaluation"]["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 500
    assert card["evaluation"]["test_accuracy"] == pytest.approx(np.trace(matrix) / 500, abs=1e-6)
    for companion in ("training_curves.png", "confusion_matrix.png", "report.md"):
        assert (card_path.parent / companion).stat().st_size > 0
    assert (tiny_model_repository / "tiny" / "1").stat().st_mode & 0o005 == 0o005, "others must be able to read it"


def test_committed_schema_is_generated_from_the_card_model() -> None:
    committed = json.loads((REPOSITORY_ROOT / "models" / "model_card.schema.json").read_text())
    assert committed == json_schema()


def test_export_failing_midway_leaves_no_version(tiny_model_repository: Path, tmp_path: Path) -> None:
    card = read_card(tiny_model_repository / "tiny" / "1")
    model = keras.models.load_model(tiny_model_repository / "tiny" / "1" / "assets.extra" / "model.keras")
    model_folder = tmp_path / "tiny"

    def interrupt(staging: Path) -> None:
        assert (staging / "saved_model.pb").exists()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_version(model, card, model_folder, test_images=TEST_IMAGES, before_publish=interrupt)
    assert list(model_folder.iterdir()) == []


def test_choose_version_takes_the_next_free_integer(tmp_path: Path) -> None:
    for name in ("1", "3", "tmp", ".tmp-4-x", "0"):
        (tmp_path / name).mkdir()
    assert choose_version(tmp_path, None, force=False) == 4
    assert choose_version(tmp_path, 7, force=False) == 7
    with pytest.raises(ExportError, match="--force"):
        choose_version(tmp_path, 3, force=False)
    assert choose_version(tmp_path, 3, force=True) == 3
    assert choose_version(tmp_path / "absent", None, force=False) == 1


def test_export_with_force_replaces_an_existing_version(tiny_model_repository: Path, tmp_path: Path) -> None:
    card = read_card(tiny_model_repository / "tiny" / "1")
    model = keras.models.load_model(tiny_model_repository / "tiny" / "1" / "assets.extra" / "model.keras")
    model_folder = tmp_path / "tiny"
    (model_folder / "1").mkdir(parents=True)
    (model_folder / "1" / "stale.txt").write_text("old")
    with pytest.raises(ExportError, match="already exists"):
        export_version(model, card, model_folder, test_images=TEST_IMAGES)
    final = export_version(model, card, model_folder, test_images=TEST_IMAGES, force=True)
    assert (final / "saved_model.pb").exists() and not (final / "stale.txt").exists()
    assert sorted(entry.name for entry in model_folder.iterdir()) == ["1"]


def test_cli_refuses_to_overwrite_a_version_without_force(tiny_model_repository: Path, mnist_npz: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "training", "--data", str(mnist_npz), "--model-dir", str(tiny_model_repository),
         "--name", "tiny", "--version", "1", "--quiet"],
        capture_output=True, text=True, env=quiet_tensorflow_environment(), timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "already exists" in completed.stderr and "--force" in completed.stderr


def test_cli_help_documents_every_option() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "training", "--help"], capture_output=True, text=True,
        env=quiet_tensorflow_environment(), timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0
    for option in ("--arch", "--recipe", "--data", "--model-dir", "--name", "--version", "--force", "--epochs",
                   "--seed", "--quiet", "--limit-train", "--limit-test"):  # fmt: skip
        assert option in completed.stdout


def test_cli_same_seed_repeats_the_run(tmp_path: Path, mnist_npz: Path) -> None:
    cards = []
    for run in ("first", "second"):
        completed = subprocess.run(
            [sys.executable, "-m", "training", "--data", str(mnist_npz), "--recipe", "default", "--epochs", "1",
             "--limit-train", "600", "--limit-test", "200", "--seed", "7",
             "--model-dir", str(tmp_path / run), "--quiet"],
            capture_output=True, text=True, env=quiet_tensorflow_environment(), timeout=300,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr
        cards.append(read_card(tmp_path / run / "mnist_convnet" / "1"))
    first, second = cards
    assert first.training.history[0].loss == second.training.history[0].loss
    assert first.evaluation.confusion_matrix == second.evaluation.confusion_matrix
    assert first.evaluation.test_loss == second.evaluation.test_loss


@pytest.mark.parametrize(("key", "runner"), [("litert", litert_runner), ("onnx", onnx_runner)])
def test_tiny_run_exports_converted_models_that_agree_with_the_savedmodel(
    tiny_model_repository: Path, mnist_sample: dict, key: str, runner: Callable
) -> None:
    version = tiny_model_repository / "tiny" / "1"
    recorded = getattr(read_card(version), key)
    assert recorded is not None and recorded.checked_images == 500 and recorded.max_difference <= 1e-5
    converted = (version / recorded.file).read_bytes()
    assert hashlib.sha256(converted).hexdigest() == recorded.sha256
    images = (mnist_sample["x_test"][:40].astype("float32") / 255)[..., np.newaxis]
    served = tf.saved_model.load(str(version)).signatures["serving_default"](image=tf.constant(images))
    np.testing.assert_allclose(runner(converted)(images), served["probabilities"].numpy(), atol=1e-5)


def test_tiny_run_exports_the_feature_maps_signature(tiny_model_repository: Path) -> None:
    version = tiny_model_repository / "tiny" / "1"
    card = read_card(version)
    assert card.feature_maps == ["conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "conv2d_2"]
    maps = tf.saved_model.load(str(version)).signatures["feature_maps"](image=tf.zeros((2, 28, 28, 1)))
    shapes = {name: tensor.shape.as_list() for name, tensor in maps.items()}
    assert shapes == {
        "conv2d": [2, 26, 26, 32],
        "max_pooling2d": [2, 13, 13, 32],
        "conv2d_1": [2, 11, 11, 64],
        "max_pooling2d_1": [2, 5, 5, 64],
        "conv2d_2": [2, 3, 3, 64],
    }


@pytest.mark.parametrize(
    ("what", "option", "convert"), [("LiteRT", "to_litert", convert_to_litert), ("ONNX", "to_onnx", convert_to_onnx)]
)
def test_export_refuses_a_converted_model_that_disagrees_with_its_savedmodel(
    tiny_model_repository: Path, tmp_path: Path, what: str, option: str, convert: Callable[[Path], bytes]
) -> None:
    card = read_card(tiny_model_repository / "tiny" / "1")
    model = keras.models.load_model(tiny_model_repository / "tiny" / "1" / "assets.extra" / "model.keras")
    stranger = tmp_path / "stranger"
    stranger_model = build_model("convnet")  # untrained: other weights, other answers
    write_saved_model(stranger_model, stranger)

    def wrong_conversion(_: Path) -> bytes:
        return convert(stranger)

    with pytest.raises(ExportError, match=f"{what} model disagrees with the SavedModel"):
        export_version(model, card, tmp_path / "tiny", test_images=TEST_IMAGES, **{option: wrong_conversion})
    assert not any((tmp_path / "tiny").iterdir()), "nothing is published"


def test_reexport_publishes_the_same_weights_as_the_next_version(
    tiny_model_repository: Path, tmp_path: Path, mnist_npz: Path
) -> None:
    import shutil

    repository = tmp_path / "repository"
    shutil.copytree(tiny_model_repository, repository)
    completed = subprocess.run(
        [sys.executable, "-m", "training.reexport", str(repository / "tiny" / "1"), "--data", str(mnist_npz)],
        capture_output=True, text=True, env=quiet_tensorflow_environment(), timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    old, new = read_card(repository / "tiny" / "1"), read_card(repository / "tiny" / "2")
    assert new.version == 2 and new.exported_from == 1 and new.litert is not None and new.onnx is not None
    assert new.evaluation.test_accuracy == pytest.approx(old.evaluation.test_accuracy, abs=1e-6)
    assert new.training == old.training and new.architecture == old.architecture
    jsonschema.validate(json.loads((repository / "tiny" / "2" / "assets.extra" / "model_card.json").read_text()),
                        json_schema())  # fmt: skip
