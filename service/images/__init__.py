"""Uploaded image files in, one 28x28 MNIST digit out (Pillow, numpy and OpenCV, no TensorFlow).

A request walks two steps:

1. `decode_image` opens the bytes with Pillow, restricted to `SUPPORTED_FORMATS`, checks the pixel count that
   the header declares before a single pixel is decoded (so decompression bombs never are), loads the first
   frame and applies the EXIF orientation of phone photos. Any failure of Pillow on client bytes becomes a
   domain error (`InvalidImage`, `ImageTooLarge`), never a 500.
2. `normalise_to_mnist` redoes what NIST and LeCun did to make MNIST: a white digit on black, cropped to its
   ink, scaled so that its longer side is 20 px (the aspect ratio kept), anti-aliased, and placed in a 28x28
   frame with its centre of mass at the centre. Before that it has to find the ink in whatever clients send:
   a sheet photographed on a desk is cropped to the sheet, dark ink on light paper is inverted, uneven lighting
   and shadows are divided out, the ink is thresholded (Otsu), specks, ruled lines and frames are dropped, and
   strokes are thickened or thinned towards MNIST's width.
   `image_as_is` is the other path, for clients that already send MNIST pixels (`?preprocess=none`).

The steps live in the modules of this package, in the order a request meets them: decode, grey, ink, pieces,
strokes. Pillow decodes (its format, header and bomb checks are in decode.py; OpenCV decodes nothing), and
OpenCV's native code does the image operations: connected components, morphology, blurs and resizing. The
numbers behind the design (stroke widths, thresholds, timings) are measured by `bench/preprocess_eval.py`.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from service.errors import InvalidShape
from service.images import grey, ink, pieces, strokes
from service.images.decode import (
    SUPPORTED_FORMATS,
    decode_image,
    decode_memory_estimate,
    load_image,
    open_image,
    pillow_failures_as_domain_errors,
)

# Each image is a few hundred thousand pixels at most, and the server already runs images side by side in its
# decode lanes: OpenCV's own thread pool would only compete with them for the cores.
cv2.setNumThreads(1)

__all__ = [
    "SUPPORTED_FORMATS",
    "Normalised",
    "decode_image",
    "decode_memory_estimate",
    "file_to_mnist",
    "file_to_normalised",
    "image_as_is",
    "normalise",
    "normalise_to_mnist",
    "open_file",
    "opened_to_mnist",
]


class Normalised(NamedTuple):
    """A normalised digit, and the share of the drawn ink it kept (1.0 when nothing but specks and surroundings
    was dropped; files sent as-is keep everything)."""

    digit: npt.NDArray[np.uint8]
    ink_kept: float


def normalise_to_mnist(image: Image.Image) -> npt.NDArray[np.uint8]:
    """Find the digit in any photo, scan or drawing and render it the way MNIST digits were made."""
    return normalise(image).digit


def normalise(image: Image.Image) -> Normalised:
    """`normalise_to_mnist`, with the share of the drawn ink the digit kept."""
    with pillow_failures_as_domain_errors():
        gray = grey.grayscale_on_white(image)
    ink_levels = ink.ink_strength(ink.within_the_sheet(gray))
    threshold = ink.ink_threshold(ink_levels)
    digit_region, ink_kept = pieces.digit_mask(ink_levels >= threshold)
    binary = strokes.binary_strokes(strokes.digit_crop(ink_levels, digit_region), threshold)
    return Normalised(strokes.centred_in_mnist_frame(strokes.with_mnist_stroke_width(binary)), ink_kept)


def image_as_is(image: Image.Image) -> npt.NDArray[np.uint8]:
    """Take a 28x28 image that already is in MNIST format: grey levels only, no inversion, no cropping.

    Colour is reduced to luma and 16-bit or float pixels are scaled to 0-255. Transparent pixels are composited
    on black: in MNIST polarity black is the absence of ink, which is what transparency means in a drawing.
    """
    width, height = image.size
    if (width, height) != (strokes.MNIST_SIDE, strokes.MNIST_SIDE):
        raise InvalidShape(
            f"with preprocessing off the image must be 28x28 pixels, got {width}x{height}; "
            "send a 28x28 MNIST-style image or turn preprocessing on"
        )
    with pillow_failures_as_domain_errors():
        gray = grey.grayscale(image, transparent_level=0.0)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def open_file(data: bytes, *, max_pixels: int, preprocess: bool = True) -> Image.Image:
    """Read an uploaded file's header (no pixels are decoded yet), checked against `max_pixels`.

    With preprocessing, a JPEG is set to decode at a reduced scale; the returned image's `size` is what will be
    decoded, so width x height is the decoding cost.
    """
    return open_image(data, max_pixels=max_pixels, jpeg_draft_side=grey.WORKING_SIDE // 2 if preprocess else None)


def opened_to_mnist(image: Image.Image, *, max_pixels: int, preprocess: bool = True) -> Normalised:
    """Decode an image that `open_file` opened and turn it into one 28x28 uint8 MNIST digit (with the share of
    its ink kept)."""
    load_image(image, max_pixels=max_pixels)
    return normalise(image) if preprocess else Normalised(image_as_is(image), 1.0)


def file_to_mnist(data: bytes, *, max_pixels: int, preprocess: bool = True) -> npt.NDArray[np.uint8]:
    """Decode an uploaded file and turn it into one 28x28 uint8 MNIST digit (white on black, 0-255)."""
    return file_to_normalised(data, max_pixels=max_pixels, preprocess=preprocess).digit


def file_to_normalised(data: bytes, *, max_pixels: int, preprocess: bool = True) -> Normalised:
    """`file_to_mnist`, with the share of the drawn ink the digit kept."""
    image = open_file(data, max_pixels=max_pixels, preprocess=preprocess)
    return opened_to_mnist(image, max_pixels=max_pixels, preprocess=preprocess)
