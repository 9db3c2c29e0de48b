"""The seed convnet of Deep Learning with Python §5.1, and the seed's contrast without max pooling."""

from __future__ import annotations

import keras
from keras import layers

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
ARCHITECTURES = ("convnet", "convnet-no-maxpool")


def build_model(arch: str) -> keras.Model:
    """Build an untrained model by name; an unknown name raises ValueError listing the choices."""
    if arch == "convnet":
        return _convnet(max_pooling=True)
    if arch == "convnet-no-maxpool":
        return _convnet(max_pooling=False)
    raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")


def _convnet(*, max_pooling: bool) -> keras.Model:
    """Three 3x3 convolutions with (or without) 2x2 max pooling between them, then a small dense classifier.

    With pooling the final feature map is 3x3x64 (576 features, 93,322 parameters); without it the map stays
    22x22x64 (30,976 features), and the first dense layer alone grows to almost two million parameters.
    """
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = layers.Conv2D(32, 3, activation="relu", name="conv2d")(inputs)
    if max_pooling:
        x = layers.MaxPooling2D(2, name="max_pooling2d")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2d_1")(x)
    if max_pooling:
        x = layers.MaxPooling2D(2, name="max_pooling2d_1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2d_2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="dense_1")(x)
    name = "convnet" if max_pooling else "convnet_no_maxpool"
    return keras.Model(inputs, outputs, name=name)


def layer_table(model: keras.Model) -> list[dict]:
    """What `model.summary()` prints, as data: a reloaded SavedModel has no summary, so the card keeps this."""
    rows = []
    for layer in model.layers:
        output_shape = layer.output.shape if hasattr(layer, "output") else None
        rows.append(
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "output_shape": list(output_shape) if output_shape is not None else None,
                "params": int(layer.count_params()),
                "trainable": bool(layer.trainable),
            }
        )
    return rows
