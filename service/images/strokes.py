"""From the cropped ink to MNIST's look: binary strokes brought to MNIST's stroke width, then one anti-aliased
resize into the 28x28 frame with the longer side 20 px and the centre of mass at (14, 14).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from service.errors import BlankImage
from service.images.arrays import BoolArray, FloatArray
from service.images.pieces import cell_sums

# MNIST's geometry: the digit's longer side is 20 px, in a 28x28 frame, its centre of mass at pixel (14, 14)
# (the mean centre of mass of the MNIST test set is row 13.99, column 14.01).
MNIST_SIDE = 28
MNIST_BOX = 20
MNIST_CENTRE = 14.0
# The cropped digit is turned into a binary stroke image whose longer side is between these two sizes:
# stroke widths are measured and adjusted there, in "canonical pixels" (the digit's longer side = 100).
CANONICAL_SIDE = 100
LARGEST_STROKE_SIDE = 200
# MNIST's stroke width in canonical pixels (see `_stroke_width`; measured on the binary digit whose longer side
# is CANONICAL_SIDE), from 3000 MNIST training digits put through this module: median 9.9, 10th percentile 7.5,
# 80th 12.1, 96th 16. Thinner strokes than the 10th percentile are thickened to the median; fatter ones than the
# 96th are thinned to the 80th (thinning bold print or marker strokes all the way to the median made printed
# 4s look like 1s: 99.4% on printed digits instead of 99.9%, and no gain on markers); others are left alone.
MNIST_STROKE_WIDTH = 9.9
THINNEST_STROKE_WIDTH = 7.5
THICKEST_STROKE_WIDTH = 16.0
THINNED_STROKE_WIDTH = 12.0
# A step of dilation or erosion: the 3x3 square, or the 5-pixel cross.
SQUARE = np.ones((3, 3), dtype=np.uint8)
CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def digit_crop(ink: FloatArray, digit_mask: BoolArray) -> FloatArray:
    """The ink within the digit's bounding box, with everything not near a kept piece of ink erased."""
    near_digit = cv2.dilate(digit_mask.astype(np.uint8), SQUARE, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    rows = np.flatnonzero(near_digit.any(axis=1))
    columns = np.flatnonzero(near_digit.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
    return np.where(near_digit[window], ink[window], np.float32(0))


def binary_strokes(crop: FloatArray, threshold: float) -> FloatArray:
    """The digit as a binary image whose longer side is between CANONICAL_SIDE and LARGEST_STROKE_SIDE.

    MNIST was made from binary NIST scans; its grey levels come only from anti-aliasing when shrinking to 20 px.
    Small crops are enlarged (bilinear) before thresholding, so that the outline is smooth rather than blocky;
    large ones are thresholded first and shrunk by blocks, a block being ink if any of its pixels is, so that
    one-pixel pen lines survive (their width is corrected afterwards).
    """
    height, width = crop.shape
    longer = max(height, width)
    strokes = crop >= threshold
    if longer < CANONICAL_SIDE:
        scale = CANONICAL_SIDE / longer
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        enlarged = cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR) >= threshold
        if not enlarged.any():
            # Isolated pixels just above the threshold can fall below it when interpolated: keep them blocky.
            enlarged = cv2.resize(strokes.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        strokes = enlarged
    elif longer > LARGEST_STROKE_SIDE:
        strokes = cell_sums(strokes, math.ceil(longer / LARGEST_STROKE_SIDE)) > 0
    return strokes.astype(np.float32)


def with_mnist_stroke_width(strokes: FloatArray) -> FloatArray:
    """Thicken hair-lines and thin fat-marker strokes towards MNIST's typical width (see MNIST_STROKE_WIDTH).

    The width estimate assumes long strokes; short fat ones change shape as they thin, so a second pass corrects
    what the first one missed.
    """
    for _ in range(2):
        adjusted = _stroke_width_adjusted_once(strokes)
        if adjusted is strokes:
            break
        strokes = adjusted
    return strokes


def _stroke_width_adjusted_once(strokes: FloatArray) -> FloatArray:
    """One thickening or thinning step; `strokes` itself when its width is within MNIST's usual range.

    Growing the strokes by s pixels on each side also grows the digit's box by 2s, and the box is what becomes
    20 px; so s solves (width + 2s) / (side + 2s) = target width / CANONICAL_SIDE (negative s thins).
    """
    side = _longer_extent(strokes)
    width = _stroke_width(strokes)
    canonical_width = width * CANONICAL_SIDE / side
    if THINNEST_STROKE_WIDTH <= canonical_width <= THICKEST_STROKE_WIDTH:
        return strokes
    target = (MNIST_STROKE_WIDTH if canonical_width < THINNEST_STROKE_WIDTH else THINNED_STROKE_WIDTH) / CANONICAL_SIDE
    steps = round((target * side - width) / (2 * (1 - target)))
    if steps >= 0:
        return _dilated(strokes, steps)
    thinned = _eroded(strokes, -steps)
    # Thinning keeps about (target width / width) of the ink; much less means that whole strokes vanished (the
    # width was misjudged), and the digit is better left fat.
    expected_share = (target * side - 2 * target * -steps) / max(width, 1.0)
    # Stripes or a checkerboard of one-pixel lines vanish entirely, whatever the share says.
    kept_enough = thinned.any() and thinned.sum() >= 0.5 * expected_share * strokes.sum()
    return thinned if kept_enough else strokes


def _longer_extent(strokes: FloatArray) -> int:
    """The longer side of the ink's bounding box, in pixels."""
    rows = np.flatnonzero(strokes.any(axis=1))
    columns = np.flatnonzero(strokes.any(axis=0))
    return int(max(rows[-1] - rows[0], columns[-1] - columns[0])) + 1


def _stroke_width(strokes: FloatArray) -> float:
    """The mean stroke width in pixels, taking the ink as one long rectangle: area A = w * l, outline P = 2(w + l).

    Then w = (P/2 - sqrt(P^2/4 - 4A)) / 2. For thin strokes that is A / (P/2); unlike A / (P/2) it does not
    underestimate short fat strokes. The outline counts 4-connected pixel edges.
    """
    ink = strokes > 0.5
    padded = np.pad(ink, 1)
    outline = np.count_nonzero(padded[:, 1:] != padded[:, :-1]) + np.count_nonzero(padded[1:, :] != padded[:-1, :])
    area = float(np.count_nonzero(ink))
    half_outline = float(outline) / 2
    discriminant = max(half_outline * half_outline - 4 * area, 0.0)
    return (half_outline - math.sqrt(discriminant)) / 2


def _dilated(strokes: FloatArray, steps: int) -> FloatArray:
    """Grow the strokes by `steps` pixels on each side, alternating square and cross steps (an octagon)."""
    grown = np.pad(strokes, steps)
    for step in range(steps):
        grown = cv2.dilate(grown, SQUARE if step % 2 == 0 else CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return grown


def _eroded(strokes: FloatArray, steps: int) -> FloatArray:
    """Shrink the strokes by `steps` pixels on each side; outside the image is background."""
    shrunk = strokes
    for step in range(steps):
        shrunk = cv2.erode(shrunk, SQUARE if step % 2 == 0 else CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return shrunk


def centred_in_mnist_frame(strokes: FloatArray) -> npt.NDArray[np.uint8]:
    """Shrink the digit's box to 20 px on its longer side and centre its mass at (14, 14), in one resampling.

    Pillow's `resize(box=...)` takes a fractional source window and anti-aliases, so the shift is sub-pixel and
    the digit is resampled only once. The shift is limited so that no part of the digit leaves the frame.
    """
    rows = np.flatnonzero(strokes.any(axis=1))
    columns = np.flatnonzero(strokes.any(axis=0))
    if rows.size == 0:
        raise BlankImage("no digit found: the ink vanished when scaled to 20 pixels; send a larger digit")
    first_row, last_row, first_column, last_column = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    source_per_output = max(last_row - first_row, last_column - first_column) / MNIST_BOX
    mass = float(strokes.sum())
    centre_row = float(strokes.sum(axis=1) @ np.arange(strokes.shape[0])) / mass + 0.5
    centre_column = float(strokes.sum(axis=0) @ np.arange(strokes.shape[1])) / mass + 0.5
    top = _frame_origin(centre_row, first_row, last_row, source_per_output)
    left = _frame_origin(centre_column, first_column, last_column, source_per_output)
    extent = MNIST_SIDE * source_per_output
    pad = math.ceil(max(0.0, -top, -left, top + extent - strokes.shape[0], left + extent - strokes.shape[1])) + 1
    canvas = Image.fromarray(np.pad(strokes, pad), mode="F")
    box = (left + pad, top + pad, left + pad + extent, top + pad + extent)
    frame = canvas.resize((MNIST_SIDE, MNIST_SIDE), Image.Resampling.BOX, box=box)
    return np.clip(np.rint(np.asarray(frame) * 255), 0, 255).astype(np.uint8)


def _frame_origin(centre: float, first: int, last: int, source_per_output: float) -> float:
    """Where the frame starts, in source pixels, for `centre` to land on pixel 14's centre.

    It is clamped so that the digit's extent [first, last) stays inside the frame.
    """
    origin = centre - (MNIST_CENTRE + 0.5) * source_per_output
    return min(max(origin, last - MNIST_SIDE * source_per_output), float(first))
