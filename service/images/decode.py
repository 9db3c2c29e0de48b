"""Bytes in, a Pillow image out: only the five supported formats' parsers see client bytes, the pixel count the
header declares is checked before decoding, and every Pillow failure becomes a domain error, never a 500.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import ImageTooLarge, InvalidImage, ServiceError

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


# Peak memory while decoding and converting, in bytes per pixel, measured with `ru_maxrss` on 40-megapixel files
# (16383 x 2441): Pillow holds the decoded frame, a copy on its way in and, for WebP, libwebp's own RGBA canvas.
DECODE_BYTES_PER_PIXEL = {"WEBP": 16.0, "RGBA": 8.5, "LA": 8.5, "RGB": 4.7, "CMYK": 4.7, "I;16": 4.0}
DEFAULT_DECODE_BYTES_PER_PIXEL = 2.0  # 8-bit grey, palette and bilevel images (PNG, GIF, BMP), drafted JPEGs


def decode_memory_estimate(image: Image.Image) -> int:
    """About how many bytes decoding this opened image will take at its peak (its `size` is what will decode)."""
    width, height = image.size
    per_pixel = DECODE_BYTES_PER_PIXEL.get(
        image.format or "", DECODE_BYTES_PER_PIXEL.get(image.mode, DEFAULT_DECODE_BYTES_PER_PIXEL)
    )
    return int(width * height * per_pixel)


def decode_image(data: bytes, *, max_pixels: int, jpeg_draft_side: int | None = None) -> Image.Image:
    """Decode one uploaded image file: first frame, EXIF orientation applied, in Pillow's own mode.

    `max_pixels` bounds width x height as declared by the file's header, checked before decoding.
    `jpeg_draft_side`, when given, lets the JPEG decoder shrink the image by 2, 4 or 8 while its longer side stays
    at least that long (a 4000x3000 photo then decodes in 18 ms instead of 46, as 500x375 grey); other formats
    ignore it.
    """
    image = open_image(data, max_pixels=max_pixels, jpeg_draft_side=jpeg_draft_side)
    load_image(image, max_pixels=max_pixels)
    return image


def open_image(data: bytes, *, max_pixels: int, jpeg_draft_side: int | None = None) -> Image.Image:
    """The first step of `decode_image`: the header read and checked, the JPEG draft scale set; no pixels yet."""
    if not data:
        raise InvalidImage(f"the file is empty; expected a {SUPPORTED_FORMATS_TEXT} image")
    with pillow_failures_as_domain_errors():
        image = open_supported(data, max_pixels)
        check_pixel_count(image.size, max_pixels)
        if jpeg_draft_side is not None:
            draft_jpeg(image, jpeg_draft_side)
    return image


def load_image(image: Image.Image, *, max_pixels: int) -> None:
    """The second step: decode the pixels of an image `open_image` returned, and turn it upright."""
    with pillow_failures_as_domain_errors():
        image.load()
        check_pixel_count(image.size, max_pixels)
    apply_exif_orientation(image)


@contextmanager
def pillow_failures_as_domain_errors() -> Iterator[None]:
    """Turn whatever Pillow raises on hostile or broken bytes into a client error, never a 500.

    Everything (OSError for truncated data, SyntaxError, struct.error, EOFError, ValueError, a Pillow warning
    turned into an error, ...) becomes `InvalidImage`; our own domain errors and MemoryError pass through.
    """
    try:
        yield
    except (ServiceError, MemoryError):
        raise  # running out of memory is the server's problem, not a fault of the image (see service.decoding)
    except Exception as error:
        raise InvalidImage(
            f"the image data is corrupt or truncated ({type(error).__name__}: {error}); "
            f"send a complete {SUPPORTED_FORMATS_TEXT} file"
        ) from error


def open_supported(data: bytes, max_pixels: int) -> Image.Image:
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


def check_pixel_count(size: tuple[int, int], max_pixels: int) -> None:
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


def draft_jpeg(image: Image.Image, longer_side: int) -> None:
    """Ask the JPEG decoder for a grey, 2-8 times smaller image whose longer side stays >= `longer_side`."""
    if image.format not in ("JPEG", "MPO") or max(image.size) <= 2 * longer_side:
        return
    width, height = image.size
    scale = longer_side / max(width, height)
    image.draft("L", (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))


def apply_exif_orientation(image: Image.Image) -> None:
    """Turn phone photos upright. A broken EXIF block is ignored: the pixels themselves are fine."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:
        # Any failure to parse the EXIF block leaves the image as it was stored.
        return
