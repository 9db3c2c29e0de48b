"""Light augmentation on batches of [0, 1] images, so digits drawn in apps and photographed on paper are recognised.

Each image gets a random affine transform (small rotation, scale, shear and shift) and, for some images, a
thicker or thinner stroke. Everything runs as TensorFlow ops on whole batches inside the `tf.data` pipeline,
and every random draw is stateless, seeded by the run's seed and the batch's position, so runs repeat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class Augmentation:
    rotation_degrees: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    shear_degrees: float = 8.0
    shift_pixels: float = 2.0
    thicker_probability: float = 0.15
    thinner_probability: float = 0.15

    def as_dict(self) -> dict[str, float | list[float]]:
        return {
            "rotation_degrees": self.rotation_degrees,
            "scale_range": list(self.scale_range),
            "shear_degrees": self.shear_degrees,
            "shift_pixels": self.shift_pixels,
            "thicker_probability": self.thicker_probability,
            "thinner_probability": self.thinner_probability,
        }


def augment_batch(images: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
    """Augment a batch of shape (n, 28, 28, 1); `seed` is a stateless seed pair, unique per batch."""
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    images = _random_affine(images, seeds[0], augmentation)
    images = _random_stroke_width(images, seeds[1], augmentation)
    return tf.clip_by_value(images, 0.0, 1.0)


def _random_affine(images: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
    """Rotate, scale, shear and shift each image about its centre, in one projective-transform op."""
    count = tf.shape(images)[0]
    draws = tf.random.stateless_uniform([count, 6], seed=seed, minval=-1.0, maxval=1.0)
    angle = draws[:, 0] * augmentation.rotation_degrees * math.pi / 180.0
    low, high = augmentation.scale_range
    scale = (low + high) / 2.0 + draws[:, 1] * (high - low) / 2.0
    aspect = 1.0 + draws[:, 2] * 0.05
    shear = draws[:, 3] * augmentation.shear_degrees * math.pi / 180.0
    shift_x = draws[:, 4] * augmentation.shift_pixels
    shift_y = draws[:, 5] * augmentation.shift_pixels
    # The transform maps output coordinates to input coordinates, so it is the inverse of the forward motion.
    cos, sin = tf.cos(angle), tf.sin(angle)
    scale_x, scale_y = scale * aspect, scale / aspect
    a0 = cos / scale_x
    a1 = (sin + tf.tan(shear) * cos) / scale_x
    b0 = -sin / scale_y
    b1 = (cos - tf.tan(shear) * sin) / scale_y
    centre = 13.5
    a2 = centre - a0 * (centre + shift_x) - a1 * (centre + shift_y)
    b2 = centre - b0 * (centre + shift_x) - b1 * (centre + shift_y)
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def _random_stroke_width(images: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
    """Thicken some strokes (a 2x2 grey dilation) and thin others (half-way towards a 2x2 grey erosion)."""
    count = tf.shape(images)[0]
    draw = tf.random.stateless_uniform([count, 1, 1, 1], seed=seed)
    thicker = tf.nn.max_pool2d(images, ksize=2, strides=1, padding="SAME")
    thinner = 0.5 * images - 0.5 * tf.nn.max_pool2d(-images, ksize=2, strides=1, padding="SAME")
    choose_thicker = draw < augmentation.thicker_probability
    choose_thinner = (draw >= augmentation.thicker_probability) & (
        draw < augmentation.thicker_probability + augmentation.thinner_probability
    )
    return tf.where(choose_thicker, thicker, tf.where(choose_thinner, thinner, images))
