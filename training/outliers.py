"""Synthetic non-digits for outlier exposure: what the "not a digit" fine-tuning pushes toward a uniform output.

They come from sources the evaluation sets (bench/nondigits.py) never use: letters, Greek letters and symbols
typeset in matplotlib's STIX and Computer Modern fonts (filled glyphs, thickened or thinned, slanted and turned),
straight polylines, and exact geometric shapes. Every image then goes through the service's own normaliser
(`service.images.normalise_to_mnist`), so the model learns on what it will be shown.

Nothing that people also write as a digit is drawn: no O, I, l, S, Z, B, g, q, no single straight stroke, no
empty ring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from service.errors import ServiceError
from service.images import normalise_to_mnist

CHARACTERS = "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxyαβγδεζηθλμξπρσφψωΓΔΘΛΞΠΣΦΨΩ#%&@$?+=*<>~{}^€£¥§¶©®±×÷√∑∫∂∇∞≈≠★♠♣♥♦♪"
CANVAS_SIDE = 160


def training_fonts() -> list[Path]:
    """matplotlib's STIX and Computer Modern text fonts: never used by the evaluation sets."""
    import matplotlib

    folder = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
    names = ["STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf"]
    names += ["cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf"]
    return [folder / name for name in names if (folder / name).exists()]


# A normalised image whose ink is at most this many columns wide could be a 1; it is not used.
NARROWEST_INK_COLUMNS = 9


@dataclass(frozen=True)
class Font:
    face: ImageFont.FreeTypeFont
    characters: str  # those of CHARACTERS the font has glyphs for


def outlier_images(count: int, seed: int) -> np.ndarray:
    """`count` non-digits as normalised (n, 28, 28) uint8 MNIST-style images (ones the normaliser refuses, and
    ones narrow enough to be a 1, are replaced by others)."""
    rng = np.random.default_rng(seed)
    fonts = [_font(path) for path in training_fonts()]
    makers = (_glyphs, _glyphs, _glyphs, _polyline, _shapes)
    images: list[np.ndarray] = []
    while len(images) < count:
        maker = makers[len(images) % len(makers)]
        drawing = maker(rng, fonts)
        try:
            image = normalise_to_mnist(drawing)
        except ServiceError:
            continue
        if np.count_nonzero(image.max(axis=0) > 64) > NARROWEST_INK_COLUMNS:
            images.append(image)
    return np.stack(images)


def _font(path: Path) -> Font:
    from matplotlib.ft2font import FT2Font

    charmap = FT2Font(str(path)).get_charmap()
    return Font(ImageFont.truetype(str(path), 110), "".join(ch for ch in CHARACTERS if ord(ch) in charmap))


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("L", (CANVAS_SIDE * 2, CANVAS_SIDE), 0)
    return canvas, ImageDraw.Draw(canvas)


def _finish(ink: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Thicken or thin the ink, turn it a little, and make it dark on white as a drawing is."""
    change = int(rng.integers(-1, 3))
    if change > 0:
        ink = ink.filter(ImageFilter.MaxFilter(2 * change + 1))
    elif change < 0:
        ink = ink.filter(ImageFilter.MinFilter(3))
    ink = ink.rotate(rng.uniform(-20, 20), resample=Image.Resampling.BILINEAR)
    return Image.fromarray(255 - np.asarray(ink))


def _glyphs(rng: np.random.Generator, fonts: list[Font]) -> Image.Image:
    """One to three characters typeset in a training font, slanted."""
    length = int(rng.choice([1, 1, 1, 2, 3]))
    font = fonts[int(rng.integers(0, len(fonts)))]
    text = "".join(font.characters[int(index)] for index in rng.integers(0, len(font.characters), length))
    canvas, draw = _canvas()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font.face)
    x = (canvas.width - (right - left)) / 2 - left
    y = (canvas.height - (bottom - top)) / 2 - top
    draw.text((x, y), text, fill=255, font=font.face)
    shear = rng.uniform(-0.3, 0.3)
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, shear, -shear * CANVAS_SIDE / 2, 0, 1, 0))
    return _finish(canvas, rng)


def _polyline(rng: np.random.Generator, fonts: list[Font]) -> Image.Image:
    """A pen stroke of 3 to 9 straight segments with sharp turns."""
    canvas, draw = _canvas()
    points = rng.uniform([40, 15], [CANVAS_SIDE * 2 - 40, CANVAS_SIDE - 15], (int(rng.integers(4, 11)), 2))
    draw.line([tuple(point) for point in points], fill=255, width=int(rng.integers(4, 14)), joint="curve")
    return _finish(canvas, rng)


def _shapes(rng: np.random.Generator, fonts: list[Font]) -> Image.Image:
    """One or two exact shapes: filled discs, rectangles, polygons, or outlined rectangles and polygons."""
    canvas, draw = _canvas()
    for _ in range(int(rng.choice([1, 1, 2]))):
        cx, cy = rng.uniform(80, CANVAS_SIDE * 2 - 80), rng.uniform(50, CANVAS_SIDE - 50)
        radius = rng.uniform(25, 60)
        kind = int(rng.integers(0, 3))
        width = int(rng.integers(4, 14))
        if kind == 0:
            box = [cx - radius, cy - radius * rng.uniform(0.6, 1.0), cx + radius, cy + radius * rng.uniform(0.6, 1.0)]
            draw.ellipse(box, fill=255)  # an empty ring would be a 0
        elif kind == 1:
            box = [cx - radius, cy - radius * rng.uniform(0.5, 1.0), cx + radius, cy + radius * rng.uniform(0.5, 1.0)]
            draw.rectangle(box, fill=255 if rng.random() < 0.5 else None, outline=255, width=width)
        else:
            corners = int(rng.integers(3, 9))
            angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
            radii = radius * rng.uniform(0.4, 1.0, corners)
            polygon = [(cx + r * math.cos(a), cy + r * math.sin(a)) for r, a in zip(radii, angles, strict=True)]
            draw.polygon(polygon, fill=255 if rng.random() < 0.5 else None, outline=255, width=width)
    return _finish(canvas, rng)
