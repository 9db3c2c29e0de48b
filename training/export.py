"""Atomic, versioned export into the model repository: `models/<name>/<version>/`, TF Serving's layout.

Everything is written into a temporary folder beside the versions and renamed into place only when complete,
so an interrupted or failed run never leaves a version that a server could load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models.contract import (
    CARD_FILE,
    EXTRA_FOLDER,
    INPUT_NAME,
    OUTPUT_NAME,
    SIGNATURE_NAME,
    TEMPORARY_PREFIX,
    version_numbers,
)
from training.card import ModelCard
from training.plots import write_confusion_matrix, write_report, write_training_curves


class ExportError(Exception):
    """The export could not be done; nothing was left behind in the repository."""


def choose_version(model_folder: Path, pinned: int | None, *, force: bool) -> int:
    """The next free version, or the pinned one (which may replace an existing version only with `force`)."""
    versions = version_numbers(model_folder)
    if pinned is None:
        return (versions[-1] + 1) if versions else 1
    if pinned < 1:
        raise ExportError(f"--version must be a positive integer, got {pinned}")
    if pinned in versions and not force:
        raise ExportError(f"{model_folder / str(pinned)} already exists; pass --force to replace it, or omit --version")
    return pinned


def export_version(
    model: keras.Model,
    card: ModelCard,
    model_folder: Path,
    *,
    force: bool = False,
    before_publish: Callable[[Path], None] | None = None,
) -> Path:
    """Write the SavedModel, the Keras file, the card and its plots, then publish them as version `card.version`.

    `before_publish` is called on the complete temporary folder just before the rename (tests use it to fail
    an export midway).
    """
    model_folder.mkdir(parents=True, exist_ok=True)
    final = model_folder / str(card.version)
    if final.exists() and not force:
        raise ExportError(f"{final} already exists; pass --force to replace it")
    staging = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{card.version}-", dir=model_folder))
    staging.chmod(0o777 & ~_current_umask())  # mkdtemp makes it private; servers running as other users read it.
    try:
        write_saved_model(model, staging)
        check_saved_model(model, staging)
        extra = staging / EXTRA_FOLDER
        extra.mkdir()
        model.save(extra / "model.keras")
        (extra / CARD_FILE).write_text(card.model_dump_json(indent=2) + "\n")
        write_training_curves(card, extra / "training_curves.png")
        write_confusion_matrix(card, extra / "confusion_matrix.png")
        write_report(card, extra / "report.md")
        if before_publish:
            before_publish(staging)
        _publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def write_saved_model(model: keras.Model, folder: Path) -> None:
    """A SavedModel whose `serving_default` maps `image` [-1,28,28,1] float32 to `probabilities` [-1,10]."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(image, training=False)}

    archive.add_endpoint(
        name=SIGNATURE_NAME,
        fn=serve,
        input_signature=[tf.TensorSpec(shape=(None, 28, 28, 1), dtype=tf.float32, name=INPUT_NAME)],
    )
    archive.write_out(str(folder), verbose=False)


def check_saved_model(model: keras.Model, folder: Path, tolerance: float = 1e-5) -> None:
    """Reload the SavedModel as a server would and check it gives the Keras model's probabilities."""
    loaded = tf.saved_model.load(str(folder))
    signature = loaded.signatures[SIGNATURE_NAME]
    probe = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    served = signature(**{INPUT_NAME: tf.constant(probe)})[OUTPUT_NAME].numpy()
    expected = keras.ops.convert_to_numpy(model(probe, training=False))
    difference = float(np.max(np.abs(served - expected)))
    if difference > tolerance:
        raise ExportError(f"the exported SavedModel disagrees with the Keras model by {difference:.2e}")


def _publish(staging: Path, final: Path) -> None:
    """Rename the complete folder into place; a replaced version is moved aside first, then deleted."""
    if not final.exists():
        os.rename(staging, final)
        return
    retired = final.with_name(f"{TEMPORARY_PREFIX}retired-{final.name}-{os.getpid()}")
    os.rename(final, retired)
    os.rename(staging, final)
    shutil.rmtree(retired, ignore_errors=True)


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def read_card(version_folder: Path) -> ModelCard:
    return ModelCard.model_validate(json.loads((version_folder / EXTRA_FOLDER / CARD_FILE).read_text()))
