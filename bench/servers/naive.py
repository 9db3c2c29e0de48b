"""The naive baseline: the seed's Keras model called with `model.predict` inside an `async def` route.

This is how a first attempt usually looks, and it is what the service has to beat. `predict` builds a dataset
and runs a graph for every single image, and because the route is `async def` it does so on the event loop,
so requests queue behind each other one at a time.

The model is `<model directory>/<highest version>/assets.extra/model.keras`, the Keras file the training job
writes next to the SavedModel. The model directory comes from the BENCH_MODEL_DIR environment variable.
If no such file exists yet, the seed architecture is built with random weights and a warning is printed: the
timing is the same, only the answers are meaningless.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import keras
import numpy as np
from fastapi import FastAPI, Request
from keras import layers
from pydantic import BaseModel

from models.contract import EXTRA_FOLDER, version_numbers

MODEL_DIRECTORY_VARIABLE = "BENCH_MODEL_DIR"
DEFAULT_MODEL_DIRECTORY = "models/mnist_convnet"
KERAS_FILE = Path(EXTRA_FOLDER) / "model.keras"


class ImageRequest(BaseModel):
    """One grayscale image as 28 rows of 28 integer pixels."""

    image: list[list[int]]


def find_keras_file(model_directory: Path) -> Path | None:
    """The Keras file of the highest numbered version, or None when there is none."""
    if not model_directory.is_dir():
        return None
    for version in reversed(version_numbers(model_directory)):
        if (model_directory / str(version) / KERAS_FILE).is_file():
            return model_directory / str(version) / KERAS_FILE
    return None


def build_seed_model() -> keras.Model:
    """The convnet of Deep Learning with Python §5.1, untrained."""
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def load_model(model_directory: Path) -> keras.Model:
    keras_file = find_keras_file(model_directory)
    if keras_file is None:
        print(
            f"warning: no {KERAS_FILE} under {model_directory}; using the seed architecture with random weights",
            file=sys.stderr,
            flush=True,
        )
        return build_seed_model()
    return keras.models.load_model(keras_file)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, keras.Model]]:
    model_directory = Path(os.environ.get(MODEL_DIRECTORY_VARIABLE, DEFAULT_MODEL_DIRECTORY))
    yield {"model": load_model(model_directory)}


app = FastAPI(title="bench naive baseline", lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
async def predict(body: ImageRequest, request: Request) -> dict[str, object]:
    # The naive part: a blocking `predict` call on the event loop, one image at a time.
    pixels = np.asarray(body.image, dtype=np.float32).reshape(1, 28, 28, 1) / 255.0
    probabilities = request.state.model.predict(pixels, verbose=0)[0]
    digit = int(probabilities.argmax())
    return {"digit": digit, "confidence": float(probabilities[digit]), "probabilities": probabilities.tolist()}
