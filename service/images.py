"""Uploaded image files in, one 28x28 MNIST digit out (Pillow and numpy only, no TensorFlow).

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

The numbers behind the design (stroke widths, thresholds, timings) are measured by `bench/preprocess_eval.py`.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from service.errors import BlankImage, ImageTooLarge, InvalidImage, InvalidShape, ServiceError

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
ArrayT = TypeVar("ArrayT", FloatArray, BoolArray)

# The Pillow format names that are accepted. Pillow names phone photos that carry a second, "multi-picture"
# image "MPO"; they are JPEG files and are accepted as such.
SUPPORTED_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP"})
FORMAT_ALIASES = {"MPO": "JPEG"}
SUPPORTED_FORMATS_TEXT = "PNG, JPEG, GIF, BMP or WEBP"

# Pillow warns about decompression bombs above this many pixels (its default Image.MAX_IMAGE_PIXELS).
PILLOW_PIXEL_LIMIT = 89_478_485

# Magic numbers of formats that clients send by mistake, so that the error can name what was sent.
KNOWN_UNSUPPORTED_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"%PDF", "PDF"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"8BPS", "PSD"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
    (0, b"<svg", "SVG"),
    (0, b"<?xml", "XML or SVG"),
)

# MNIST's geometry: the digit's longer side is 20 px, in a 28x28 frame, its centre of mass at pixel (14, 14)
# (the mean centre of mass of the MNIST test set is row 13.99, column 14.01).
MNIST_SIDE = 28
MNIST_BOX = 20
MNIST_CENTRE = 14.0

# The modes Pillow can shrink by averaging (Image.reduce); others are converted first.
AVERAGEABLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "YCbCr"})
# Huge photos are shrunk by an integer factor (a cheap box average) until their longer side is at most this;
# a digit that fills a tenth of a 4000 px photo is still about 50 px tall at this size.
WORKING_SIDE = 512
# The background (paper and lighting) is estimated on a copy at most this large.
BACKGROUND_SIDE = 64
# Ink connectivity is analysed on a grid at most this large.
COMPONENT_GRID_SIDE = 128
# The cropped digit is turned into a binary stroke image whose longer side is between these two sizes:
# stroke widths are measured and adjusted there, in "canonical pixels" (the digit's longer side = 100).
CANONICAL_SIDE = 100
LARGEST_STROKE_SIDE = 200

# Grey levels are 0-255 (white 255) until the ink is found; ink strength is 0 (paper) to 1 (black on white).
# A background that varies by less than this many grey levels is taken as uniform.
UNIFORM_BACKGROUND_LEVELS = 8.0
# The ink must differ from the paper by at least this fraction of the paper's brightness ...
MINIMUM_INK_CONTRAST = 0.12
# ... and by this many standard deviations of the paper's noise.
NOISE_DEVIATIONS = 5.0
# A sheet of paper on a desk: its light region must hold this share of the image, fill this share of its own
# bounding box, and that box must leave at least a little desk visible (cover at most this share); the crop keeps
# this fraction of the box's size clear of its edges; the desk must cover this share of the image's border.
SHEET_MINIMUM_SHARE = 0.35
SHEET_MINIMUM_FILL = 0.7
SHEET_MAXIMUM_SHARE = 0.9
SHEET_INSET = 0.03
SHEET_DESK_BORDER_SHARE = 0.8
# Connected pieces of ink smaller than this fraction of the digit's main piece are specks.
SPECK_FRACTION = 0.04
# Pieces farther from the main piece than this fraction of its longer side are not part of the digit.
NEIGHBOUR_DISTANCE_FRACTION = 0.5
# Pieces that lie mostly within this fraction of the image's side from an edge are ruled lines or frames ...
EDGE_BAND_FRACTION = 0.08
EDGE_CLUTTER_SHARE = 0.8
# ... and so are pieces that run along at least this share of one side of the image (a desk around the paper).
BORDER_CONTACT_SHARE = 0.5
# The main piece must hold at least this fraction of the image's pixels (at the working size) to be a digit.
MINIMUM_DIGIT_SHARE = 0.0002

# MNIST's stroke width in canonical pixels (see `_stroke_width`; measured on the binary digit whose longer side
# is CANONICAL_SIDE), from 3000 MNIST training digits put through this module: median 9.9, 10th percentile 7.5,
# 80th 12.1, 96th 16. Thinner strokes than the 10th percentile are thickened to the median; fatter ones than the
# 96th are thinned to the 80th (thinning bold print or marker strokes all the way to the median made printed
# 4s look like 1s: 99.4% on printed digits instead of 99.9%, and no gain on markers); others are left alone.
MNIST_STROKE_WIDTH = 9.9
THINNEST_STROKE_WIDTH = 7.5
THICKEST_STROKE_WIDTH = 16.0
THINNED_STROKE_WIDTH = 12.0


def decode_image(data: bytes, *, max_pixels: int, jpeg_draft_side: int | None = None) -> Image.Image:
    """Decode one uploaded image file: first frame, EXIF orientation applied, in Pillow's own mode.

    `max_pixels` bounds width x height as declared by the file's header, checked before decoding.
    `jpeg_draft_side`, when given, lets the JPEG decoder shrink the image by 2, 4 or 8 while its longer side stays
    at least that long (a 4000x3000 photo then decodes in 18 ms instead of 46, as 500x375 grey); other formats
    ignore it.
    """
    if not data:
        raise InvalidImage(f"the file is empty; expected a {SUPPORTED_FORMATS_TEXT} image")
    with _pillow_failures_as_domain_errors():
        image = _open_supported(data, max_pixels)
        _check_pixel_count(image.size, max_pixels)
        if jpeg_draft_side is not None:
            _draft_jpeg(image, jpeg_draft_side)
        image.load()
        _check_pixel_count(image.size, max_pixels)
    _apply_exif_orientation(image)
    return image


def normalise_to_mnist(image: Image.Image) -> npt.NDArray[np.uint8]:
    """Find the digit in any photo, scan or drawing and render it the way MNIST digits were made."""
    with _pillow_failures_as_domain_errors():
        gray = _grayscale_on_white(image)
    ink = _ink_strength(_within_the_sheet(gray))
    threshold = _ink_threshold(ink)
    digit_mask = _digit_mask(ink >= threshold)
    strokes = _binary_strokes(_digit_crop(ink, digit_mask), threshold)
    return _centred_in_mnist_frame(_with_mnist_stroke_width(strokes))


def image_as_is(image: Image.Image) -> npt.NDArray[np.uint8]:
    """Take a 28x28 image that already is in MNIST format: grey levels only, no inversion, no cropping.

    Colour is reduced to luma and 16-bit or float pixels are scaled to 0-255. Transparent pixels are composited
    on black: in MNIST polarity black is the absence of ink, which is what transparency means in a drawing.
    """
    width, height = image.size
    if (width, height) != (MNIST_SIDE, MNIST_SIDE):
        raise InvalidShape(
            f"with preprocessing off the image must be {MNIST_SIDE}x{MNIST_SIDE} pixels, got {width}x{height}; "
            "send a 28x28 MNIST-style image or turn preprocessing on"
        )
    with _pillow_failures_as_domain_errors():
        gray = _grayscale(image, transparent_level=0.0)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def file_to_mnist(data: bytes, *, max_pixels: int, preprocess: bool = True) -> npt.NDArray[np.uint8]:
    """Decode an uploaded file and turn it into one 28x28 uint8 MNIST digit (white on black, 0-255)."""
    if not preprocess:
        return image_as_is(decode_image(data, max_pixels=max_pixels))
    image = decode_image(data, max_pixels=max_pixels, jpeg_draft_side=WORKING_SIDE // 2)
    return normalise_to_mnist(image)


# Decoding.


@contextmanager
def _pillow_failures_as_domain_errors() -> Iterator[None]:
    """Turn whatever Pillow raises on hostile or broken bytes into a client error, never a 500.

    Everything (OSError for truncated data, SyntaxError, struct.error, EOFError, ValueError, MemoryError, a
    Pillow warning turned into an error, ...) becomes `InvalidImage`; our own domain errors pass through untouched.
    """
    try:
        yield
    except ServiceError:
        raise
    except Exception as error:
        raise InvalidImage(
            f"the image data is corrupt or truncated ({type(error).__name__}: {error}); "
            f"send a complete {SUPPORTED_FORMATS_TEXT} file"
        ) from error


def _open_supported(data: bytes, max_pixels: int) -> Image.Image:
    """Read the header, trying the supported formats only (other parsers never see client bytes).

    Pillow's own decompression-bomb guard fires inside `Image.open` (a warning above 89 megapixels, which may be
    configured as an error, and an error above 179); both mean the header declares far more than `max_pixels`.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=sorted(SUPPORTED_FORMATS))
    except UnidentifiedImageError as error:
        raise InvalidImage(_unsupported_format_message(data)) from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLarge(
            f"the image declares {_declared_pixels_text(str(error))}; the limit is {_pixel_count_text(max_pixels)}"
        ) from error
    image_format = FORMAT_ALIASES.get(image.format or "", image.format)
    if image_format not in SUPPORTED_FORMATS:
        raise InvalidImage(f"{image.format} images are not supported; send a {SUPPORTED_FORMATS_TEXT} image")
    return image


def _unsupported_format_message(data: bytes) -> str:
    for offset, signature, name in KNOWN_UNSUPPORTED_SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return f"{name} files are not supported; send a {SUPPORTED_FORMATS_TEXT} image"
    return f"the file is not a {SUPPORTED_FORMATS_TEXT} image (or its header is damaged)"


def _check_pixel_count(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"the image is {width}x{height} pixels; it must be at least 1x1")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} = {_pixel_count_text(width * height)}; "
            f"the limit is {_pixel_count_text(max_pixels)}"
        )


def _declared_pixels_text(bomb_message: str) -> str:
    """The pixel count in Pillow's bomb message ("Image size (N pixels) exceeds ..."), if it is still worded so."""
    match = re.search(r"\((\d+) pixels\)", bomb_message)
    return _pixel_count_text(int(match.group(1))) if match else f"more than {_pixel_count_text(PILLOW_PIXEL_LIMIT)}"


def _pixel_count_text(pixels: int) -> str:
    if pixels >= 100_000:
        return f"{pixels / 1_000_000:.1f} megapixels"
    return f"{pixels:,} pixels"


def _draft_jpeg(image: Image.Image, longer_side: int) -> None:
    """Ask the JPEG decoder for a grey, 2-8 times smaller image whose longer side stays >= `longer_side`."""
    if image.format not in ("JPEG", "MPO") or max(image.size) <= 2 * longer_side:
        return
    width, height = image.size
    scale = longer_side / max(width, height)
    image.draft("L", (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))


def _apply_exif_orientation(image: Image.Image) -> None:
    """Turn phone photos upright. A broken EXIF block is ignored: the pixels themselves are fine."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:
        # Any failure to parse the EXIF block leaves the image as it was stored.
        return


# From any mode to grey levels.


def _grayscale_on_white(image: Image.Image) -> FloatArray:
    """Grey levels 0-255 at the working size, transparent pixels composited on white.

    A drawing of light strokes on a transparent background would vanish on white; if the image is blank on
    white but its alpha channel is not, it is composited on black instead.
    """
    gray = _grayscale(image, transparent_level=255.0)
    if np.ptp(gray) < 255 * MINIMUM_INK_CONTRAST and image.has_transparency_data:
        on_black = _grayscale(image, transparent_level=0.0)
        if np.ptp(on_black) > np.ptp(gray):
            return on_black
    return gray


def _grayscale(image: Image.Image, *, transparent_level: float) -> FloatArray:
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


# Finding the ink.


def _within_the_sheet(gray: FloatArray) -> FloatArray:
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
    labels, count = _connected_components(light)
    if count == 0:
        return gray
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    areas[0] = 0
    sheet = int(np.argmax(areas))
    top, left, bottom, right = (int(value) for value in _bounding_boxes(labels, count)[sheet])
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


def _ink_strength(gray: FloatArray) -> FloatArray:
    """Per pixel, how much ink there is: 0 on the paper, 1 for black ink on white paper, bright ink on black.

    Dark ink on light paper is inverted first. The paper's level, which a photo's lighting makes uneven, is
    estimated and divided out, so that ink in a shadow is as strong as ink in the light. An uneven background
    has two estimates (see `_background_candidates`): the fine one, which also removes shadows, is used except
    where the coarse one finds strong ink, which the fine one would hollow out if the strokes are fat.
    """
    bright_ink = 255 - gray if _background_is_light(gray) else gray
    inks = [_flattened(bright_ink, background) for background in _background_candidates(bright_ink)]
    if len(inks) == 1:
        return inks[0]
    coarse, fine = inks
    strong = 0.5 * float(np.percentile(_subsample(coarse), 99.9))
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
    return float(np.median(border)) > 255 * _otsu_threshold(sample / np.float32(255))


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
    """Shrunk by the smallest integer factor (box averages) that brings the longer side to at most `side`."""
    factor = math.ceil(max(values.shape) / side)
    return np.asarray(Image.fromarray(values, mode="F").reduce(factor), dtype=np.float32) if factor > 1 else values


def _subsample(values: FloatArray, side: int = 256) -> FloatArray:
    """Every n-th row and column, so that statistics of a large image look at about `side` x `side` pixels."""
    return values[:: math.ceil(values.shape[0] / side), :: math.ceil(values.shape[1] / side)]


def _background_candidates(bright_ink: FloatArray) -> list[FloatArray]:
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
        level = uniform_level if uniform_level is not None else float(np.median(bright_ink))
        return [np.full_like(bright_ink, level)]
    scale = min(1.0, BACKGROUND_SIDE / max(height, width))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(bright_ink, mode="F").resize(small_size, Image.Resampling.BOX))
    coarse = _opened_and_blurred(small, min(small_size) // 3)
    if float(coarse.max() - coarse.min()) < UNIFORM_BACKGROUND_LEVELS:
        return [np.full_like(bright_ink, float(np.median(coarse)))]
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
    low, middle, high = np.percentile(background, [5, 50, 95])
    return float(middle) if high - low < UNIFORM_BACKGROUND_LEVELS else None


def _opened_and_blurred(small: FloatArray, window: int) -> FloatArray:
    window = max(3, window | 1)
    opened = _window_extreme(_window_extreme(small, window, np.minimum), window, np.maximum)
    smooth = Image.fromarray(np.clip(opened, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(window / 2))
    return np.asarray(smooth, dtype=np.float32)


def _enlarged(levels: FloatArray, size: tuple[int, int]) -> FloatArray:
    return np.asarray(Image.fromarray(levels, mode="F").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _window_extreme(values: FloatArray, window: int, extreme: np.ufunc) -> FloatArray:
    """The minimum or maximum over each pixel's `window` x `window` square (edges replicated)."""
    down_columns = _running_extreme(values, window, extreme)
    return _running_extreme(down_columns.T, window, extreme).T


def _running_extreme(values: FloatArray, window: int, extreme: np.ufunc) -> FloatArray:
    """The extreme over a centred window down each column, by doubling spans: O(log window) array operations."""
    length = values.shape[0]
    spans = np.pad(values, ((window // 2, window // 2), (0, 0)), mode="edge")
    span = 1
    while 2 * span <= window:
        # Row i holds the extreme of `span` rows starting at i; combining it with row i + span doubles that.
        spans = extreme(spans[:-span], spans[span:])
        span *= 2
    # Two overlapping spans, one at the window's start and one ending at its end, cover it exactly.
    return extreme(spans[:length], spans[window - span : window - span + length])


def _ink_threshold(ink: FloatArray) -> float:
    """Otsu's threshold, raised above the paper's noise and a minimum contrast; BlankImage if nothing passes.

    The paper's level is the median of Otsu's lower class and its noise comes from differences between
    neighbouring pixels, so neither is thrown off when ink (or a desk around the paper) covers much of the image.
    """
    sample = _subsample(ink)
    otsu = _otsu_threshold(sample)
    below = sample[sample < otsu]
    paper = float(np.median(below if below.size else sample))
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
    return 1.4826 * float(np.median(differences)) / math.sqrt(2)


def _otsu_threshold(ink: FloatArray) -> float:
    """Otsu's (1979) level in 0-1 that best separates two classes of pixels, on a 256-bin histogram."""
    counts = np.bincount(np.clip(ink * 255, 0, 255).astype(np.int64).ravel(), minlength=256).astype(np.float64)
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


# Keeping the digit, dropping specks and edge clutter.


def _digit_mask(ink_mask: BoolArray) -> BoolArray:
    """The ink that belongs to the digit: the main connected piece and the sizeable pieces near it.

    Connectivity is analysed on a coarse grid (a cell is inked if any of its pixels is), which also joins
    strokes broken by a pixel or two.
    """
    cell = math.ceil(max(ink_mask.shape) / COMPONENT_GRID_SIDE)
    ink_per_cell = _cell_sums(ink_mask, cell)
    labels, count = _connected_components(ink_per_cell > 0)
    areas = np.bincount(labels.ravel(), weights=ink_per_cell.ravel(), minlength=count + 1).astype(np.float64)
    kept = _pieces_to_keep(labels, areas, count, ink_mask.size)
    kept_cells = np.isin(labels, np.flatnonzero(kept))
    kept_pixels = np.repeat(np.repeat(kept_cells, cell, axis=0), cell, axis=1)
    return ink_mask & kept_pixels[: ink_mask.shape[0], : ink_mask.shape[1]]


def _cell_sums(mask: BoolArray, cell: int) -> FloatArray:
    """The number of inked pixels in each `cell` x `cell` block (adding strided slices beats a 4-D sum)."""
    height, width = mask.shape
    rows, columns = math.ceil(height / cell), math.ceil(width / cell)
    padded = np.zeros((rows * cell, columns * cell), dtype=np.float32)
    padded[:height, :width] = mask
    row_sums = sum((padded[offset::cell] for offset in range(1, cell)), start=padded[0::cell].copy())
    return sum((row_sums[:, offset::cell] for offset in range(1, cell)), start=row_sums[:, 0::cell].copy())


class _DisjointSets:
    """Union-find over the integers 0..size-1, with path halving."""

    def __init__(self, size: int) -> None:
        self.parents = list(range(size))

    def find(self, item: int) -> int:
        parents = self.parents
        while parents[item] != item:
            parents[item] = parents[parents[item]]
            item = parents[item]
        return item

    def union(self, first: int, second: int) -> None:
        self.parents[self.find(first)] = self.find(second)


def _connected_components(mask: BoolArray) -> tuple[IntArray, int]:
    """8-connected components labelled 1..count (0 is background), by union-find over horizontal runs of ink."""
    height, width = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    run_rows, run_starts = np.nonzero(edges == 1)
    run_ends = np.nonzero(edges == -1)[1]
    row_bounds = np.searchsorted(run_rows, np.arange(height + 1)).tolist()
    starts, ends = run_starts.tolist(), run_ends.tolist()
    runs = _DisjointSets(len(starts))
    for row in range(1, height):
        _join_touching_runs(
            range(row_bounds[row - 1], row_bounds[row]), range(row_bounds[row], row_bounds[row + 1]), starts, ends, runs
        )
    roots = np.array([runs.find(run) for run in range(len(starts))], dtype=np.int64)
    unique_roots, run_labels = np.unique(roots, return_inverse=True)
    lengths = run_ends - run_starts
    # The flat index of every inked pixel, run by run: each run's first pixel, then steps of one.
    first_pixels = np.repeat(run_rows * width + run_starts - np.cumsum(lengths) + lengths, lengths)
    labels = np.zeros(height * width, dtype=np.int64)
    labels[first_pixels + np.arange(int(lengths.sum()))] = np.repeat(run_labels + 1, lengths)
    return labels.reshape(height, width), len(unique_roots)


def _join_touching_runs(upper: range, lower: range, starts: list[int], ends: list[int], runs: _DisjointSets) -> None:
    """Unite the runs of two adjacent rows that touch, diagonally included (a run covers [start, end))."""
    upper_index, lower_index = upper.start, lower.start
    while upper_index < upper.stop and lower_index < lower.stop:
        if starts[upper_index] <= ends[lower_index] and starts[lower_index] <= ends[upper_index]:
            runs.union(upper_index, lower_index)
        if ends[upper_index] < ends[lower_index]:
            upper_index += 1
        else:
            lower_index += 1


def _pieces_to_keep(labels: IntArray, areas: npt.NDArray[np.float64], count: int, image_pixels: int) -> BoolArray:
    """Which components (by label) are the digit.

    Edge clutter (lines and frames along the border) and boxes drawn around the digit are dropped if anything
    else is large enough to be a digit; the largest remaining piece is the digit's main piece; other pieces stay
    if they are not specks (relative to the main piece) and lie near it.
    """
    boxes = _bounding_boxes(labels, count)
    clutter = _edge_clutter(labels, areas, count) | _enclosing_frames(boxes, areas)
    candidates = np.ones(count + 1, dtype=np.bool_)
    candidates[0] = False
    smallest_digit = max(2.0, MINIMUM_DIGIT_SHARE * image_pixels)
    if areas[~clutter & candidates].max(initial=0) >= smallest_digit:
        candidates &= ~clutter
    main = int(np.argmax(np.where(candidates, areas, -1)))
    if areas[main] < smallest_digit:
        raise BlankImage("no digit found: the only ink is a few isolated specks; send an image with a visible digit")
    gaps = _box_gaps(boxes, boxes[main])
    main_side = float(max(boxes[main, 2] - boxes[main, 0], boxes[main, 3] - boxes[main, 1]) + 1)
    near = gaps <= NEIGHBOUR_DISTANCE_FRACTION * main_side
    return candidates & (areas >= SPECK_FRACTION * areas[main]) & near


def _enclosing_frames(boxes: IntArray, areas: npt.NDArray[np.float64]) -> BoolArray:
    """Components whose bounding box strictly contains another one that is not a speck: a box drawn or printed
    around the digit. The pieces of a digit do not nest like that."""
    frames = np.zeros(len(boxes), dtype=np.bool_)
    for label in range(1, len(boxes)):
        inside = (
            (boxes[:, 0] > boxes[label, 0])
            & (boxes[:, 1] > boxes[label, 1])
            & (boxes[:, 2] < boxes[label, 2])
            & (boxes[:, 3] < boxes[label, 3])
            & (areas >= SPECK_FRACTION * areas[label])
        )
        inside[0] = False
        frames[label] = bool(inside.any())
    return frames


def _bounding_boxes(labels: IntArray, count: int) -> IntArray:
    """Per label: (first row, first column, last row, last column)."""
    rows, columns = np.nonzero(labels)
    owners = labels[rows, columns]
    boxes = np.zeros((count + 1, 4), dtype=np.int64)
    boxes[:, :2] = np.iinfo(np.int64).max
    np.minimum.at(boxes[:, 0], owners, rows)
    np.minimum.at(boxes[:, 1], owners, columns)
    np.maximum.at(boxes[:, 2], owners, rows)
    np.maximum.at(boxes[:, 3], owners, columns)
    return boxes


def _box_gaps(boxes: IntArray, reference: IntArray) -> IntArray:
    """The chessboard gap between each box and the reference box (0 when they overlap or touch)."""
    row_gap = np.maximum(0, np.maximum(boxes[:, 0] - reference[2], reference[0] - boxes[:, 2]) - 1)
    column_gap = np.maximum(0, np.maximum(boxes[:, 1] - reference[3], reference[1] - boxes[:, 3]) - 1)
    return np.maximum(row_gap, column_gap)


def _edge_clutter(labels: IntArray, areas: npt.NDArray[np.float64], count: int) -> BoolArray:
    """Components that belong to the surroundings rather than to the digit.

    Either they lie mostly in the band along the image's edges (ruled lines, printed frames), or they run along at
    least half of one side of the image (the desk around a sheet of paper, the paper's edge, a dark corner).
    """
    height, width = labels.shape
    band = max(1, round(EDGE_BAND_FRACTION * min(height, width)))
    in_band = np.ones_like(labels, dtype=np.bool_)
    in_band[band:-band, band:-band] = False
    cells_in_band = np.bincount(labels[in_band], minlength=count + 1)
    cells = np.bincount(labels.ravel(), minlength=count + 1)
    in_edge_band = cells_in_band >= EDGE_CLUTTER_SHARE * np.maximum(cells, 1)
    along_a_side = np.zeros(count + 1, dtype=np.bool_)
    for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        along_a_side |= np.bincount(side, minlength=count + 1) >= BORDER_CONTACT_SHARE * side.size
    along_a_side[0] = False
    return in_edge_band | along_a_side


# From the cropped ink to MNIST strokes.


def _digit_crop(ink: FloatArray, digit_mask: BoolArray) -> FloatArray:
    """The ink within the digit's bounding box, with everything not near a kept piece of ink erased."""
    near_digit = _neighbourhood_extreme(digit_mask, np.maximum, square=True)
    rows = np.flatnonzero(near_digit.any(axis=1))
    columns = np.flatnonzero(near_digit.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
    return np.where(near_digit[window], ink[window], np.float32(0))


def _binary_strokes(crop: FloatArray, threshold: float) -> FloatArray:
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
        enlarged = np.asarray(Image.fromarray(crop, mode="F").resize(size, Image.Resampling.BILINEAR)) >= threshold
        if not enlarged.any():
            # Isolated pixels just above the threshold can fall below it when interpolated: keep them blocky.
            enlarged = np.asarray(Image.fromarray(strokes).resize(size, Image.Resampling.NEAREST), dtype=np.bool_)
        strokes = enlarged
    elif longer > LARGEST_STROKE_SIDE:
        strokes = _cell_sums(strokes, math.ceil(longer / LARGEST_STROKE_SIDE)) > 0
    return strokes.astype(np.float32)


def _with_mnist_stroke_width(strokes: FloatArray) -> FloatArray:
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
    return thinned if thinned.sum() >= 0.5 * expected_share * strokes.sum() else strokes


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
        grown = _neighbourhood_extreme(grown, np.maximum, square=step % 2 == 0)
    return grown


def _eroded(strokes: FloatArray, steps: int) -> FloatArray:
    shrunk = strokes
    for step in range(steps):
        shrunk = _neighbourhood_extreme(shrunk, np.minimum, square=step % 2 == 0)
    return shrunk


def _neighbourhood_extreme(values: ArrayT, extreme: np.ufunc, *, square: bool) -> ArrayT:
    """Maximum or minimum over each pixel's 3x3 square or 5-pixel cross; outside the image is background (0)."""
    padded = np.pad(values, 1)
    centre = padded[1:-1, 1:-1]
    horizontal = extreme(extreme(padded[1:-1, :-2], centre), padded[1:-1, 2:])
    if square:
        padded_rows = np.pad(horizontal, ((1, 1), (0, 0)))
        return extreme(extreme(padded_rows[:-2], horizontal), padded_rows[2:])
    vertical = extreme(padded[:-2, 1:-1], padded[2:, 1:-1])
    return extreme(horizontal, vertical)


# Into the 28x28 frame.


def _centred_in_mnist_frame(strokes: FloatArray) -> npt.NDArray[np.uint8]:
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
