"""Outlier exposure (Hendrycks et al., 2019): fine-tune a trained digit model so that it answers non-digits with a
flat output, and digits as before. The architecture does not change; only the weights move.

The loss is the usual cross-entropy on MNIST digits plus, weighted by `outlier_weight`, the cross-entropy between
a uniform distribution and the model's output on synthetic non-digits (training/outliers.py): the same
categorical cross-entropy, with a target of 0.1 for every digit. Digits and non-digits get the recipe's light
augmentation alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from training.augment import Augmentation, augment_batch
from training.recipes import TrainingResult, _EpochRecorder


@dataclass(frozen=True)
class OutlierExposure:
    epochs: int = 4
    learning_rate: float = 5e-4
    batch_size: int = 128
    outlier_count: int = 30_000
    outlier_weight: float = 0.5

    def as_dict(self) -> dict[str, float | int]:
        return {
            "method": "outlier exposure",
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "schedule": "cosine",
            "batch_size": self.batch_size,
            "outlier_count": self.outlier_count,
            "outlier_weight": self.outlier_weight,
        }


def fine_tune(
    model: keras.Model,
    digits: np.ndarray,
    labels: np.ndarray,
    outliers: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    settings: OutlierExposure,
    *,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Fine-tune `model` in place on digits (uint8 (n, 28, 28) with labels) and outliers (uint8, no labels)."""
    images = np.concatenate([digits, outliers])
    targets = np.concatenate(
        [np.eye(10, dtype=np.float32)[labels.astype(np.int64)], np.full((len(outliers), 10), 0.1, np.float32)]
    )
    weights = np.concatenate(
        [np.ones(len(digits), np.float32), np.full(len(outliers), settings.outlier_weight, np.float32)]
    )
    steps = int(np.ceil(len(images) / settings.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, settings.epochs * steps, alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="categorical_crossentropy", metrics=["accuracy"])
    examples = tf.data.Dataset.from_tensor_slices((images, targets, weights))
    batches = examples.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).batch(settings.batch_size)
    batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    augmentation = Augmentation()

    def scale_and_augment(batch: tuple[tf.Tensor, ...], batch_seed: tf.Tensor) -> tuple[tf.Tensor, ...]:
        pixels, target, weight = batch
        pixels = tf.cast(pixels, tf.float32)[..., tf.newaxis] / 255.0
        return augment_batch(pixels, batch_seed, augmentation), target, weight

    dataset = (
        tf.data.Dataset.zip((batches, batch_seeds))
        .map(scale_and_augment, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    validation_images, validation_labels = validation
    validation_data = (
        validation_images.astype(np.float32)[..., np.newaxis] / 255.0,
        np.eye(10, dtype=np.float32)[validation_labels.astype(np.int64)],
    )
    recorder = _EpochRecorder(select_best=False, progress=progress)
    model.fit(dataset, epochs=settings.epochs, validation_data=validation_data, callbacks=[recorder], verbose=0)
    return TrainingResult(model, recorder.history, None)
