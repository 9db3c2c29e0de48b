"""Any Pillow mode to grey levels 0-255 (white 255) at a working size: transparency composited, 16-bit and float
pixels scaled, huge photos shrunk early by cheap box averages.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from service.images.arrays import FloatArray

# The modes Pillow can shrink by averaging (Image.reduce); others are converted first.
AVERAGEABLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "YCbCr"})
# Huge photos are shrunk by an integer factor (a cheap box average) until their longer side is at most this;
# a digit that fills a tenth of a 4000 px photo is still about 50 px tall at this size.
WORKING_SIDE = 512
# The ink must differ from the paper by at least this fraction of the paper's brightness (see ink.py).
MINIMUM_INK_CONTRAST = 0.12


def grayscale_on_white(image: Image.Image) -> FloatArray:
    """Grey levels 0-255 at the working size, transparent pixels composited on white.

    A drawing of light strokes on a transparent background would vanish on white; if the image is blank on
    white but its alpha channel is not, it is composited on black instead.
    """
    gray = grayscale(image, transparent_level=255.0)
    if np.ptp(gray) < 255 * MINIMUM_INK_CONTRAST and image.has_transparency_data:
        on_black = grayscale(image, transparent_level=0.0)
        if np.ptp(on_black) > np.ptp(gray):
            return on_black
    return gray


def grayscale(image: Image.Image, *, transparent_level: float) -> FloatArray:
    """Grey levels 0-255 (float32) at most WORKING_SIDE large, from any Pillow mode.

    The image is shrunk before any conversion where Pillow can average its mode (it premultiplies alpha), so a
    huge photo is never copied or converted at full size.
    """
    if image.mode.startswith("I;16"):
        return _shrunk_array(image.convert("I")) / np.float32(257)
    if image.mode in ("I", "F"):
        return _scaled_to_8_bits(_shrunk_array(image))
    transparent = image.has_transparency_data
    if image.mode not in AVERAGEABLE_MODES or (transparent and image.mode not in ("RGBA", "LA")):
        # Palettes, bilevel images, colour-key transparency and rare modes are expanded first.
        image = image.convert("RGBA" if transparent else "L" if image.mode in ("1", "P") else "RGB")
    image = _shrunk(image)
    if image.mode in ("RGBA", "LA"):
        return _composited(image, transparent_level)
    return np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.float32)


def _shrunk(image: Image.Image) -> Image.Image:
    """Shrink by the smallest integer factor (a box average) that brings the longer side to WORKING_SIDE."""
    factor = math.ceil(max(image.size) / WORKING_SIDE)
    return image.reduce(factor) if factor > 1 else image


def _shrunk_array(image: Image.Image) -> FloatArray:
    return np.asarray(_shrunk(image), dtype=np.float32)


def _scaled_to_8_bits(values: FloatArray) -> FloatArray:
    """32-bit integer or float grey levels to 0-255, by the range they evidently use.

    Values within 0-1 are fractions, within 0-255 bytes, within 0-65535 16-bit levels; anything else is
    stretched from its minimum to its maximum.
    """
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 1:
        return values * np.float32(255)
    if low >= 0 and high <= 255:
        return values
    if low >= 0 and high <= 65535:
        return values / np.float32(257)
    return (values - np.float32(low)) * np.float32(255 / (high - low))


def _composited(image: Image.Image, transparent_level: float) -> FloatArray:
    """Luma of an RGBA or LA image composited over a uniform background of `transparent_level`."""
    luma = np.asarray(image.convert("L"), dtype=np.float32)
    opacity = np.asarray(image.getchannel("A"), dtype=np.float32) / np.float32(255)
    return luma * opacity + np.float32(transparent_level) * (1 - opacity)
