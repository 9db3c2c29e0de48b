"""Finding the ink: a sheet photographed on a desk is cropped to the sheet, the polarity is detected, uneven
lighting and shadows are flattened out, and a threshold (Otsu, raised above the paper's noise) separates ink.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from service.errors import BlankImage
from service.images.arrays import FloatArray
from service.images.grey import MINIMUM_INK_CONTRAST
from service.images.pieces import components_and_boxes

# The background (paper and lighting) is estimated on a copy at most this large.
BACKGROUND_SIDE = 64
# Grey levels are 0-255 (white 255) until the ink is found; ink strength is 0 (paper) to 1 (black on white).
# A background that varies by less than this many grey levels is taken as uniform.
UNIFORM_BACKGROUND_LEVELS = 8.0
# The ink must differ from the paper by MINIMUM_INK_CONTRAST of its brightness (see grey.py) and by this many
# standard deviations of the paper's noise.
NOISE_DEVIATIONS = 5.0
# A sheet of paper on a desk: its light region must hold this share of the image, fill this share of its own
# bounding box, and that box must leave at least a little desk visible (cover at most this share); the crop keeps
# this fraction of the box's size clear of its edges; the desk must cover this share of the image's border.
SHEET_MINIMUM_SHARE = 0.35
SHEET_MINIMUM_FILL = 0.7
SHEET_MAXIMUM_SHARE = 0.9
SHEET_INSET = 0.03
SHEET_DESK_BORDER_SHARE = 0.8


def within_the_sheet(gray: FloatArray) -> FloatArray:
    """A photo of a sheet of paper lying on a darker desk, cropped to the sheet; any other image as it is.

    The desk must make up most of the image's border (SHEET_DESK_BORDER_SHARE of Otsu's dark class), which a
    lighting gradient or a tight crop of a fat digit does not. The sheet is the largest connected region of the
    light class, if it is big (SHEET_MINIMUM_SHARE of the image), compact (it fills SHEET_MINIMUM_FILL of its
    bounding box) and leaves a visible margin. The crop keeps SHEET_INSET inside the sheet's box, so that the desk
    left in the corners of a slightly turned sheet is thin (and dropped later as edge clutter).
    """
    sample = _box_averaged(gray, 128)
    factor = math.ceil(max(gray.shape) / 128)
    light = sample > 255 * _otsu_threshold(sample / np.float32(255))
    border = np.concatenate([light[0], light[-1], light[:, 0], light[:, -1]])
    if border.mean() > 1 - SHEET_DESK_BORDER_SHARE:
        return gray
    labels, count, boxes = components_and_boxes(light)
    if count == 0:
        return gray
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    areas[0] = 0
    sheet = int(np.argmax(areas))
    top, left, bottom, right = (int(value) for value in boxes[sheet])
    box_area = (bottom - top + 1) * (right - left + 1)
    if (
        areas[sheet] < SHEET_MINIMUM_SHARE * labels.size
        or areas[sheet] < SHEET_MINIMUM_FILL * box_area
        or box_area > SHEET_MAXIMUM_SHARE * labels.size
    ):
        return gray
    inset_rows = round(SHEET_INSET * (bottom - top + 1))
    inset_columns = round(SHEET_INSET * (right - left + 1))
    return gray[
        (top + inset_rows) * factor : (bottom + 1 - inset_rows) * factor,
        (left + inset_columns) * factor : (right + 1 - inset_columns) * factor,
    ]


def ink_strength(gray: FloatArray) -> FloatArray:
    """Per pixel, how much ink there is: 0 on the paper, 1 for black ink on white paper, bright ink on black.

    Dark ink on light paper is inverted first. The paper's level, which a photo's lighting makes uneven, is
    estimated and divided out, so that ink in a shadow is as strong as ink in the light. An uneven background
    has two estimates (see `background_candidates`): the fine one, which also removes shadows, is used except
    where the coarse one finds strong ink, which the fine one would hollow out if the strokes are fat.
    """
    bright_ink = 255 - gray if _background_is_light(gray) else gray
    inks = [_flattened(bright_ink, background) for background in background_candidates(bright_ink)]
    if len(inks) == 1:
        return inks[0]
    coarse, fine = inks
    strong = 0.5 * percentiles(_subsample(coarse), (99.9,))[0]
    return np.where(coarse >= strong, coarse, fine)


def _flattened(bright_ink: FloatArray, background: FloatArray) -> FloatArray:
    return (bright_ink - background) / np.maximum(np.float32(255) - background, np.float32(32))


def _background_is_light(gray: FloatArray) -> bool:
    """Is the ink darker than the background? Ink is the minority: the sparse, extreme tail of the grey levels.

    A plane (least squares) is subtracted first, so that a lighting gradient cancels out; then the sign of the
    residuals' skewness tells dark ink on light paper (negative) from MNIST's bright ink (positive), whatever the
    overall brightness, and even when a dark desk shows around the paper. When dark is the majority, though, it
    may be fat dark ink in a tight crop rather than a dark background: then the image's border decides, which is
    mostly background even in a tight crop. All of it runs on a box-averaged copy of at most 128 px, which,
    unlike a strided sample, misses no thin stroke.
    """
    sample = _box_averaged(gray, 128)
    residuals: npt.NDArray[np.float64] = sample.astype(np.float64) - _fitted_plane(sample)
    if float(np.mean(residuals * residuals * residuals)) < 0:
        return True
    border = np.concatenate([sample[0], sample[-1], sample[:, 0], sample[:, -1]])
    return percentiles(border, (50,))[0] > 255 * _otsu_threshold(sample / np.float32(255))


def _fitted_plane(levels: FloatArray) -> npt.NDArray[np.float64]:
    """The least-squares plane through a full grid: rows and columns are uncorrelated, so each slope is separate."""
    rows = np.arange(levels.shape[0], dtype=np.float64) - (levels.shape[0] - 1) / 2
    columns = np.arange(levels.shape[1], dtype=np.float64) - (levels.shape[1] - 1) / 2
    row_means = levels.mean(axis=1, dtype=np.float64)
    column_means = levels.mean(axis=0, dtype=np.float64)
    row_slope = float(row_means @ rows) / max(float(rows @ rows), 1.0)
    column_slope = float(column_means @ columns) / max(float(columns @ columns), 1.0)
    return float(row_means.mean()) + row_slope * rows[:, np.newaxis] + column_slope * columns[np.newaxis, :]


def _box_averaged(values: FloatArray, side: int) -> FloatArray:
    """Shrunk by the smallest integer factor (area averages) that brings the longer side to at most `side`."""
    factor = math.ceil(max(values.shape) / side)
    if factor == 1:
        return values
    height, width = values.shape
    size = (math.ceil(width / factor), math.ceil(height / factor))
    return cv2.resize(values, size, interpolation=cv2.INTER_AREA)


def _subsample(values: FloatArray, side: int = 256) -> FloatArray:
    """Every n-th row and column, so that statistics of a large image look at about `side` x `side` pixels."""
    return values[:: math.ceil(values.shape[0] / side), :: math.ceil(values.shape[1] / side)]


def background_candidates(bright_ink: FloatArray) -> list[FloatArray]:
    """The smooth level under the ink: one estimate for a uniform background, two for an uneven one.

    A clean drawing or scan has a uniform background: see `_uniform_background_level`. Otherwise, on a small
    copy, a grey opening (a minimum filter, then a maximum filter of the same window) removes whatever is narrower
    than its window and, unlike a bare minimum filter, follows a lighting gradient without bias; a blur smooths
    it. A window of a third of the image is wider than almost any stroke; if even that estimate varies by less
    than UNIFORM_BACKGROUND_LEVELS, the background is uniform after all. Otherwise a second estimate with a
    window of a twelfth follows shadows as well, but it would hollow out strokes wider than that.
    """
    height, width = bright_ink.shape
    uniform_level = _uniform_background_level(bright_ink)
    if uniform_level is not None or min(height, width) < 16:
        level = uniform_level if uniform_level is not None else percentiles(bright_ink, (50,))[0]
        return [np.full_like(bright_ink, level)]
    scale = min(1.0, BACKGROUND_SIDE / max(height, width))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(bright_ink, small_size, interpolation=cv2.INTER_AREA) if scale < 1 else bright_ink
    coarse = _opened_and_blurred(small, min(small_size) // 3)
    if float(coarse.max() - coarse.min()) < UNIFORM_BACKGROUND_LEVELS:
        return [np.full_like(bright_ink, percentiles(coarse, (50,))[0])]
    fine = _opened_and_blurred(small, min(small_size) // 12)
    return [_enlarged(levels, (width, height)) for levels in (coarse, fine)]


def _uniform_background_level(bright_ink: FloatArray) -> float | None:
    """The background's level if it is uniform, else None.

    It is uniform when its pixels (the darker of Otsu's two classes) span less than UNIFORM_BACKGROUND_LEVELS
    between their 5th and 95th percentiles; unlike an opening, this does not depend on how fat the strokes are.
    """
    sample = _subsample(bright_ink)
    background = sample[sample < 255 * _otsu_threshold(sample / np.float32(255))]
    if background.size == 0:
        return None
    low, middle, high = percentiles(background, (5, 50, 95))
    return middle if high - low < UNIFORM_BACKGROUND_LEVELS else None


def percentiles(values: FloatArray, percents: tuple[float, ...]) -> list[float]:
    """np.percentile's linear interpolation, with one partial sort for all of them (np.percentile sorts per call)."""
    flat = values.ravel()
    last = flat.size - 1
    positions = [percent / 100 * last for percent in percents]
    indices = sorted({index for position in positions for index in (math.floor(position), math.ceil(position))})
    ordered = np.partition(flat, indices)
    result = []
    for position in positions:
        below, above = float(ordered[math.floor(position)]), float(ordered[math.ceil(position)])
        result.append(below + (above - below) * (position - math.floor(position)))
    return result


def _opened_and_blurred(small: FloatArray, window: int) -> FloatArray:
    """A grey opening (the minimum, then the maximum, over `window` x `window` squares, edges replicated) and a
    Gaussian blur of standard deviation window / 2."""
    window = max(3, window | 1)
    square = np.ones((window, window), dtype=np.uint8)
    opened = cv2.dilate(
        cv2.erode(small, square, borderType=cv2.BORDER_REPLICATE), square, borderType=cv2.BORDER_REPLICATE
    )
    return cv2.GaussianBlur(np.clip(opened, 0, 255), (0, 0), window / 2, borderType=cv2.BORDER_REPLICATE)


def _enlarged(levels: FloatArray, size: tuple[int, int]) -> FloatArray:
    return cv2.resize(levels, size, interpolation=cv2.INTER_LINEAR)


def ink_threshold(ink: FloatArray) -> float:
    """Otsu's threshold, raised above the paper's noise and a minimum contrast; BlankImage if nothing passes.

    The paper's level is the median of Otsu's lower class and its noise comes from differences between
    neighbouring pixels, so neither is thrown off when ink (or a desk around the paper) covers much of the image.
    """
    sample = _subsample(ink)
    otsu = _otsu_threshold(sample)
    below = sample[sample < otsu]
    (paper,) = percentiles(below if below.size else sample, (50,))
    threshold = max(otsu, paper + NOISE_DEVIATIONS * _noise_deviation(sample), paper + MINIMUM_INK_CONTRAST)
    strongest = float(ink.max())
    if strongest < threshold:
        raise BlankImage(
            f"no digit found: the strongest ink differs from the background by {max(strongest - paper, 0):.0%} "
            f"of its brightness, at least {threshold - paper:.0%} is needed; send an image with a visible digit"
        )
    return threshold


def _noise_deviation(values: FloatArray) -> float:
    """The pixel noise's standard deviation, from the median absolute difference of horizontal neighbours.

    Edges and smooth shading barely move that median, unlike the spread of the levels themselves.
    """
    if values.shape[1] < 2:
        return 0.0
    differences = np.abs(values[:, 1:] - values[:, :-1])
    return 1.4826 * percentiles(differences, (50,))[0] / math.sqrt(2)


def _otsu_threshold(ink: FloatArray) -> float:
    """Otsu's (1979) level in 0-1 that best separates two classes of pixels, on a 256-bin histogram."""
    levels_8_bit = np.clip(ink * np.float32(255), 0, 255).astype(np.uint8)  # truncated: bin k holds [k, k+1)/255
    counts = cv2.calcHist([levels_8_bit], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    below = np.cumsum(counts)
    above = below[-1] - below
    mass_below = np.cumsum(counts * levels)
    mean_below = mass_below / np.maximum(below, 1)
    mean_above = (mass_below[-1] - mass_below) / np.maximum(above, 1)
    separation = below * above * (mean_below - mean_above) ** 2
    # When the two classes are far apart every level between them separates equally well: take the middle.
    best = np.flatnonzero(separation >= separation.max() * (1 - 1e-6))
    return (float(best[0] + best[-1]) / 2 + 1) / 255
