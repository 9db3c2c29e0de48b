"""How to train: the seed's recipe, reproduced, and our default, which trains the same network better.

A recipe turns MNIST arrays into a trained Keras model and a per-epoch history. Both recipes scale pixels to
[0, 1] as the seed does, and feed the model through `tf.data` with prefetching.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.augment import Augmentation, augment_batch
from training.data import Mnist

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    optimizer: str
    learning_rate: float
    epochs: int
    batch_size: int
    validation_count: int  # held out from the end of the train set; 0 = train on all of it
    schedule: str  # "constant" or "cosine"
    warmup_epochs: int = 0
    augmentation: Augmentation | None = None
    select_best: bool = False  # keep the weights of the epoch with the best validation accuracy

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "loss": "categorical_crossentropy",
            "validation_count": self.validation_count,
            "schedule": self.schedule,
            "warmup_epochs": self.warmup_epochs,
            "select_best": self.select_best,
            "augmentation": self.augmentation.as_dict() if self.augmentation else None,
        }


RECIPES = {
    "seed": Recipe(
        name="seed",
        description="The seed's recipe: rmsprop, 5 epochs, batch 64, categorical cross-entropy, no augmentation.",
        optimizer="rmsprop",
        learning_rate=1e-3,
        epochs=5,
        batch_size=64,
        validation_count=0,
        schedule="constant",
    ),
    "default": Recipe(
        name="default",
        description=(
            "The seed architecture trained better: Adam with warm-up and cosine decay, light augmentation "
            "(rotation, scale, shear, shift, stroke width), 5,000 held-out validation images and the best "
            "epoch's weights kept."
        ),
        optimizer="adam",
        learning_rate=2e-3,
        epochs=30,
        batch_size=128,
        validation_count=5_000,
        schedule="cosine",
        warmup_epochs=1,
        augmentation=Augmentation(),
        select_best=True,
    ),
}


@dataclass
class TrainingResult:
    model: keras.Model
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    wall_time_seconds: float = 0.0


def scale_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) → float32 (n, 28, 28, 1) in [0, 1], the seed's convention."""
    return (images.astype("float32") / 255.0)[..., np.newaxis]


def train(
    model: keras.Model,
    data: Mnist,
    recipe: Recipe,
    *,
    seed: int,
    epochs: int | None = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """Compile and fit `model` with `recipe`; `epochs` overrides the recipe's count (short test runs)."""
    epochs = epochs or recipe.epochs
    train_images, train_labels, validation = _split(data, recipe.validation_count)
    steps_per_epoch = int(np.ceil(len(train_images) / recipe.batch_size))
    model.compile(
        optimizer=_optimizer(recipe, epochs, steps_per_epoch),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    dataset = _training_dataset(train_images, train_labels, recipe, seed)
    validation_dataset = _evaluation_dataset(*validation) if validation is not None else None
    recorder = _EpochRecorder(select_best=recipe.select_best and validation is not None, progress=progress)
    started = time.perf_counter()
    model.fit(
        dataset, epochs=epochs, validation_data=validation_dataset, callbacks=[recorder], shuffle=False, verbose=0
    )
    recorder.restore_best(model)
    return TrainingResult(model, recorder.history, recorder.best_epoch, time.perf_counter() - started)


def evaluation_dataset(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    return _evaluation_dataset(images, labels)


def held_out_count(requested: int, train_size: int) -> int:
    """How many images the split really holds out: the recipe's count, at most a tenth of a small train set."""
    return min(requested, train_size // 10 or 1) if requested > 0 else 0


def _split(data: Mnist, validation_count: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    validation_count = held_out_count(validation_count, len(data.x_train))
    if validation_count == 0:
        return data.x_train, data.y_train, None
    cut = len(data.x_train) - validation_count
    return data.x_train[:cut], data.y_train[:cut], (data.x_train[cut:], data.y_train[cut:])


def _optimizer(recipe: Recipe, epochs: int, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = recipe.learning_rate
    if recipe.schedule == "cosine":
        warmup_steps = min(recipe.warmup_epochs, max(epochs - 1, 0)) * steps_per_epoch
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=recipe.learning_rate / 10 if warmup_steps else recipe.learning_rate,
            decay_steps=max(epochs * steps_per_epoch - warmup_steps, 1),
            alpha=0.01,
            warmup_target=recipe.learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    if recipe.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    if recipe.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")


def _training_dataset(images: np.ndarray, labels: np.ndarray, recipe: Recipe, seed: int) -> tf.data.Dataset:
    """Shuffled, batched, scaled (and augmented) examples; shuffling and augmentation differ every epoch."""
    examples = tf.data.Dataset.from_tensor_slices((images, labels))
    examples = examples.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    batches = examples.batch(recipe.batch_size)
    augmentation = recipe.augmentation
    if augmentation is None:
        return batches.map(_scale_and_encode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def scale_encode_augment(batch: tuple[tf.Tensor, tf.Tensor], batch_seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels, one_hot = _scale_and_encode(*batch)
        return augment_batch(pixels, batch_seed, augmentation), one_hot

    return (
        tf.data.Dataset.zip((batches, batch_seeds))
        .map(scale_encode_augment, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def _evaluation_dataset(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(1000)
    return batches.map(_scale_and_encode).prefetch(tf.data.AUTOTUNE)


def _scale_and_encode(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    pixels = tf.cast(images, tf.float32)[..., tf.newaxis] / 255.0
    return pixels, tf.one_hot(tf.cast(labels, tf.int32), 10)


class _EpochRecorder(keras.callbacks.Callback):
    """Records each epoch's metrics, prints a progress line, and remembers the best epoch's weights."""

    def __init__(self, *, select_best: bool, progress: Progress | None) -> None:
        super().__init__()
        self.select_best = select_best
        self.progress = progress
        self.history: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self._best_key: tuple[float, float] | None = None
        self._best_weights: list[np.ndarray] | None = None
        self._epoch_started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        record = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self._epoch_started, 2)}
        record.update({key: float(value) for key, value in logs.items() if key != "learning_rate"})
        record["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.history.append(record)
        if self.select_best and "val_accuracy" in logs:
            key = (float(logs["val_accuracy"]), -float(logs["val_loss"]))
            if self._best_key is None or key > self._best_key:
                self._best_key, self.best_epoch = key, epoch + 1
                self._best_weights = self.model.get_weights()
        if self.progress:
            self.progress(_format_epoch(record))

    def restore_best(self, model: keras.Model) -> None:
        if self._best_weights is not None:
            model.set_weights(self._best_weights)


def _format_epoch(record: dict[str, float]) -> str:
    line = (
        f"epoch {record['epoch']:>3}  {record['seconds']:6.1f}s  "
        f"loss {record['loss']:.4f}  accuracy {record['accuracy']:.4f}"
    )
    if "val_accuracy" in record:
        line += f"  val_loss {record['val_loss']:.4f}  val_accuracy {record['val_accuracy']:.4f}"
    return line + f"  lr {record['learning_rate']:.2e}"
