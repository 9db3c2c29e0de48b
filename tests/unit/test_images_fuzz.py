"""Property-based fuzzing of the image normaliser: any image a client can send, in any size, mode, format and
pattern, becomes a 28x28 uint8 digit or raises one of the service's 4xx errors; never anything else (an
IndexError here was a 500 on the server).

The examples are derandomised, so CI runs the same ones every time; DIGIT_SERVE_FUZZ_EXAMPLES sets how many
(the README quotes a larger run).
"""

from __future__ import annotations

import io
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.errors import ServiceError
from service.images import file_to_mnist

EXAMPLES = int(os.environ.get("DIGIT_SERVE_FUZZ_EXAMPLES", "600"))
MAX_PIXELS = 40_000_000

# Which modes each format can store; an image in another mode is converted to the first one listed.
FORMAT_MODES = {
    "PNG": ("L", "1", "LA", "P", "RGB", "RGBA", "I;16"),
    "JPEG": ("L", "RGB", "CMYK"),
    "GIF": ("P", "L"),
    "BMP": ("RGB", "1", "L", "P", "RGBA"),
    "WEBP": ("RGB", "RGBA"),
}
MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F")
PATTERNS = (
    "blank",
    "noise",
    "vertical stripes",
    "horizontal stripes",
    "checkerboard",
    "gradient",
    "one pixel",
    "rectangles",
    "lines",
    "disc",
)


def pattern(name: str, width: int, height: int, seed: int) -> np.ndarray:
    """Grey levels 0-255 (uint8) of shape (height, width)."""
    rng = np.random.default_rng(seed)
    rows, columns = np.indices((height, width))
    period = int(rng.integers(1, 6))
    level = int(rng.integers(0, 256))
    background = int(rng.integers(0, 256))
    canvas = np.full((height, width), background, dtype=np.uint8)
    if name == "noise":
        return rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    if name == "vertical stripes":
        canvas[(columns // period) % 2 == 0] = level
    elif name == "horizontal stripes":
        canvas[(rows // period) % 2 == 0] = level
    elif name == "checkerboard":
        canvas[((rows // period) + (columns // period)) % 2 == 0] = level
    elif name == "gradient":
        return ((columns + rows) * 255 // max(1, width + height - 2)).astype(np.uint8)
    elif name == "one pixel":
        canvas[rng.integers(0, height), rng.integers(0, width)] = level
    elif name == "rectangles":
        for _ in range(int(rng.integers(1, 6))):
            top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
            canvas[top : top + int(rng.integers(1, height + 1)), left : left + int(rng.integers(1, width + 1))] = level
    elif name == "lines":
        for _ in range(int(rng.integers(1, 4))):
            thickness = int(rng.integers(1, 4))
            if rng.random() < 0.5:
                row = int(rng.integers(0, height))
                canvas[row : row + thickness, :] = level
            else:
                column = int(rng.integers(0, width))
                canvas[:, column : column + thickness] = level
    elif name == "disc":
        radius = rng.uniform(0.5, max(width, height))
        centre_row, centre_column = rng.uniform(0, height), rng.uniform(0, width)
        canvas[(rows - centre_row) ** 2 + (columns - centre_column) ** 2 <= radius**2] = level
    return canvas


def as_mode(grey: np.ndarray, mode: str, seed: int) -> Image.Image:
    image = Image.fromarray(grey, mode="L")
    if mode in ("LA", "RGBA", "PA"):
        alpha = np.random.default_rng(seed).choice([0, 128, 255], size=grey.shape).astype(np.uint8)
        image = image.convert("RGBA" if mode != "LA" else "LA")
        image.putalpha(Image.fromarray(alpha, mode="L"))
        return image
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257)
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 255)
    return image.convert(mode)


def encoded(image: Image.Image, image_format: str) -> bytes:
    modes = FORMAT_MODES[image_format]
    if image.mode not in modes:
        image = (
            image.convert(modes[0]) if image.mode not in ("I;16", "I", "F") else image.convert("L").convert(modes[0])
        )
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"lossless": True} if image_format == "WEBP" else {}))
    return buffer.getvalue()


sizes = st.one_of(
    st.tuples(st.integers(1, 320), st.integers(1, 320)),
    st.tuples(st.integers(1, 4), st.integers(1, 1500)),
    st.tuples(st.integers(1, 1500), st.integers(1, 4)),
    st.just((28, 28)),
)


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    size=sizes,
    mode=st.sampled_from(MODES),
    image_format=st.sampled_from(sorted(FORMAT_MODES)),
    pattern_name=st.sampled_from(PATTERNS),
    seed=st.integers(0, 2**32 - 1),
    preprocess=st.booleans(),
)
def test_images_fuzz_any_image_becomes_a_digit_or_a_4xx(
    size: tuple[int, int], mode: str, image_format: str, pattern_name: str, seed: int, preprocess: bool
) -> None:
    width, height = size
    data = encoded(as_mode(pattern(pattern_name, width, height, seed), mode, seed), image_format)
    try:
        digit = file_to_mnist(data, max_pixels=MAX_PIXELS, preprocess=preprocess)
    except ServiceError as error:
        assert 400 <= error.status_code < 500, error
        assert error.message
        return
    assert digit.shape == (28, 28)
    assert digit.dtype == np.uint8
