"""Digits drawn the way real clients send them, for tests: files in memory, made from MNIST arrays."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(image: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def as_person_would(digit: np.ndarray, *, seed: int, canvas: int = 400) -> Image.Image:
    """Inverted to black on white, enlarged 4-8x, and moved off-centre on a larger white canvas."""
    rng = np.random.default_rng(seed)
    size = int(rng.integers(112, 225))
    drawing = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BICUBIC)
    sheet = Image.new("L", (canvas, canvas), 255)
    left, top = (int(value) for value in rng.integers(0, canvas - size, size=2))
    sheet.paste(drawing, (left, top))
    return sheet


def on_transparent_canvas(digit: np.ndarray, size: int = 280) -> Image.Image:
    """What a drawing app exports: black strokes on a transparent background, as RGBA."""
    alpha = Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    canvas.putalpha(alpha)
    return canvas
