"""One training run from data to a published version: build, train, evaluate, write the card, export."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training.card import Architecture, Data, Layer, ModelCard, Signature, TensorSpec, Training, write_json_schema
from training.data import Mnist
from training.evaluate import evaluate
from training.export import INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME, choose_version, export_version
from training.model import build_model, layer_table
from training.recipes import Recipe, held_out_count, train


def run_training(
    data: Mnist,
    *,
    arch: str,
    recipe: Recipe,
    model_folder: Path,
    pinned_version: int | None,
    force: bool,
    epochs: int | None,
    seed: int,
    started: float,
    created_at: datetime,
    say: Callable[[str], None],
) -> Path:
    version = choose_version(model_folder, pinned_version, force=force)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build_model(arch)
    say(f"training {arch} ({model.count_params():,} parameters) with the {recipe.name} recipe, seed {seed}")
    result = train(model, data, recipe, seed=seed, epochs=epochs, progress=say)
    evaluation = evaluate(result.model, data.x_test, data.y_test)
    say(f"test accuracy {evaluation.test_accuracy:.4f}, test loss {evaluation.test_loss:.4f}")
    validation_count = held_out_count(recipe.validation_count, len(data.x_train))
    card = ModelCard(
        name=model_folder.name,
        version=version,
        created_at=created_at,
        architecture=_architecture(model, arch),
        signature=_signature(),
        training=Training(
            recipe=recipe.name,
            description=recipe.description,
            hyperparameters=recipe.hyperparameters() | {"epochs": epochs or recipe.epochs},
            seed=seed,
            epochs_run=len(result.history),
            best_epoch=result.best_epoch,
            history=result.history,  # type: ignore[arg-type]
            library_versions=_library_versions(),
            wall_time_seconds=round(time.perf_counter() - started, 1),
        ),
        data=Data(
            source=data.source,
            path=data.path,
            sha256=data.sha256,
            train_count=len(data.x_train) - validation_count,
            validation_count=validation_count,
            test_count=len(data.x_test),
        ),
        evaluation=evaluation,
    )
    final = export_version(result.model, card, model_folder, test_images=data.x_test, force=force)
    write_json_schema(model_folder.parent / "model_card.schema.json")
    return final


def _architecture(model: keras.Model, arch: str) -> Architecture:
    trainable = int(sum(np.prod(weight.shape) for weight in model.trainable_weights))
    total = int(model.count_params())
    return Architecture(
        name=arch,
        layers=[Layer(**row) for row in layer_table(model)],
        total_params=total,
        trainable_params=trainable,
        non_trainable_params=total - trainable,
    )


def _signature() -> Signature:
    return Signature(
        name=SIGNATURE_NAME,
        input=TensorSpec(
            name=INPUT_NAME,
            dtype="float32",
            shape=[None, 28, 28, 1],
            description="28x28 grayscale digits, white on black (MNIST polarity), pixels scaled to [0, 1]",
        ),
        output=TensorSpec(
            name=OUTPUT_NAME,
            dtype="float32",
            shape=[None, 10],
            description="softmax probabilities of the digits 0-9",
        ),
        labels=[str(digit) for digit in range(10)],
    )


def _library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
