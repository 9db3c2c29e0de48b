"""Things that are not digits, sent the way people send digits: the evaluation sets of the "not a digit" score.

Each set is encoded files, as clients send them, drawn from sources the detector never trains on (the outlier
exposure of training/outliers.py uses matplotlib's STIX and Computer Modern fonts, straight polylines and exact
geometric shapes; these sets use its DejaVu fonts, redrawn with a round pen from their skeletons, and wobbly
hand-drawn shapes and smooth scribbles):

    drawn_letters        Latin letters drawn on a 280x280 canvas (transparent PNG), like the page and drawing apps
    drawn_symbols        # % & @ $ ? + = * < > ~ and friends, drawn the same way
    photographed_letters letters written on paper and photographed (JPEG, uneven light, noise)
    shapes               a disc, a square, a triangle, a star, a heart, a smiley, a cross-hatch, an arrow, drawn by hand
    scribbles            one smooth random scribble, as a bored user draws
    words                two or three letters side by side ("hi", "cat"): several pieces of ink

Letters and symbols that people also write as digits are left out: O o (0), I i l ! / | ( ) [ ] (1), Z z (2),
S s (5), b G (6), B (8), g q (9). A detector that flagged a drawn O would be flagging a 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench.preprocess_eval import Sample, draw_pen, encoded, pen_placement, photograph, thinned

LETTERS = "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxy"  # every Latin letter but the digit look-alikes
SYMBOLS = "#%&@$?+=*<>~{}^"
WORDS = ("hi", "cat", "ok", "dog", "yes", "no", "abc", "xy", "hey", "Tom", "AM", "Hat")
DIGIT_LOOKALIKES = "OoIilZzSsbGBgq!/|()[]"


def evaluation_fonts() -> list[Path]:
    """matplotlib's DejaVu fonts (present wherever the training requirements are): never used for training."""
    import matplotlib

    folder = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
    return sorted(path for path in folder.glob("DejaVu*.ttf") if "Display" not in path.name)


def glyph_skeleton(text: str, font_path: Path, rng: np.random.Generator, side: int = 140) -> np.ndarray:
    """The one-pixel skeleton of `text` set in the font, slanted a little, on a side x side grid."""
    font = ImageFont.truetype(str(font_path), 96)
    canvas = Image.new("L", (side * 2, side), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((canvas.width - (right - left)) / 2 - left, (side - (bottom - top)) / 2 - top), text, 255, font)
    shear = rng.uniform(-0.25, 0.25)
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, shear, -shear * side / 2, 0, 1, 0))
    canvas = canvas.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BILINEAR)
    return thinned(np.asarray(canvas) >= 128)


def canvas_drawing(skeleton: np.ndarray, rng: np.random.Generator) -> bytes:
    """The skeleton drawn with a round pen on a 280x280 transparent canvas, as the page and drawing apps export."""
    size = (280, 280)
    rows, columns = np.nonzero(skeleton)
    aspect = (np.ptp(columns) + 1) / (np.ptp(rows) + 1)
    height = rng.uniform(130, 230) / max(1.0, aspect)
    placement = pen_placement(skeleton, size, height, rng, margin=20)
    coverage = draw_pen(skeleton, size, placement, pen_width=rng.uniform(10, 26), supersample=2)
    colour = [(0, 0, 0), (20, 40, 160), (30, 30, 30)][int(rng.integers(0, 3))]
    drawing = Image.new("RGBA", size, (0, 0, 0, 0))
    drawing.paste(Image.new("RGBA", size, (*colour, 255)), mask=coverage)
    return encoded(drawing, "PNG")


def paper_photo(skeleton: np.ndarray, rng: np.random.Generator) -> bytes:
    """The skeleton written with a thin pen on paper, photographed (JPEG)."""
    longer = int(rng.integers(800, 1600))
    size = (longer, longer * 3 // 4)
    rows, columns = np.nonzero(skeleton)
    aspect = (np.ptp(columns) + 1) / (np.ptp(rows) + 1)
    height = min(size) * rng.uniform(0.25, 0.5) / max(1.0, aspect / 1.3)
    placement = pen_placement(skeleton, size, height, rng, margin=0.1 * min(size))
    ink = draw_pen(skeleton, size, placement, pen_width=height * rng.uniform(0.02, 0.05))
    return encoded(photograph(ink, rng), "JPEG", quality=int(rng.integers(60, 91)))


def _wobbly(points: list[tuple[float, float]], rng: np.random.Generator, wobble: float) -> list[tuple[float, float]]:
    """A polyline resampled every few pixels and shaken like a hand."""
    dense: list[tuple[float, float]] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        steps = max(2, int(math.hypot(x1 - x0, y1 - y0) / 4))
        dense.extend((x0 + (x1 - x0) * t / steps, y0 + (y1 - y0) * t / steps) for t in range(steps))
    dense.append(points[-1])
    drift = np.cumsum(rng.normal(0, wobble, (len(dense), 2)), axis=0)
    drift -= np.linspace(0, 1, len(dense))[:, None] * drift[-1]  # a closed shape stays closed
    return [(x + dx, y + dy) for (x, y), (dx, dy) in zip(dense, drift, strict=True)]


def _circle(cx: float, cy: float, r: float, start: float = 0, end: float = 2 * math.pi, n: int = 48) -> list:
    return [
        (cx + r * math.cos(start + (end - start) * k / n), cy + r * math.sin(start + (end - start) * k / n))
        for k in range(n + 1)
    ]


def shape_strokes(kind: str, rng: np.random.Generator) -> tuple[list[list[tuple[float, float]]], bool]:
    """A hand-drawn shape in a 0-100 box: its strokes, and whether it is filled in."""
    if kind == "disc":
        return [_circle(50, 50, 40)], True
    if kind == "square":
        return [[(10, 10), (90, 10), (90, 90), (10, 90), (10, 10)]], rng.random() < 0.3
    if kind == "triangle":
        return [[(50, 8), (92, 88), (8, 88), (50, 8)]], rng.random() < 0.3
    if kind == "star":
        points = [
            (
                50 + (45 if k % 2 == 0 else 18) * math.sin(k * math.pi / 5),
                52 - (45 if k % 2 == 0 else 18) * math.cos(k * math.pi / 5),
            )
            for k in range(11)
        ]
        return [points], rng.random() < 0.3
    if kind == "heart":
        left = _circle(30, 35, 22, math.pi * 0.75, math.pi * 2.0)
        right = _circle(70, 35, 22, math.pi, math.pi * 2.25)
        return [[(50, 92), *left[::-1][::-1], *right, (50, 92)]], rng.random() < 0.3
    if kind == "smiley":
        return [
            _circle(50, 50, 44),
            _circle(50, 52, 26, 0.15 * math.pi, 0.85 * math.pi, 16),
            _circle(35, 36, 3),
            _circle(65, 36, 3),
        ], False
    if kind == "hatch":
        return [[(30, 8), (30, 92)], [(68, 8), (68, 92)], [(8, 32), (92, 32)], [(8, 70), (92, 70)]], False
    if kind == "arrow":
        return [[(8, 50), (90, 50)], [(65, 25), (90, 50), (65, 75)]], False
    raise ValueError(kind)


SHAPES = ("disc", "square", "triangle", "star", "heart", "smiley", "hatch", "arrow")


def drawn_strokes(strokes: list[list[tuple[float, float]]], filled: bool, rng: np.random.Generator) -> bytes:
    """Strokes in a 0-100 box drawn by hand on a 280x280 canvas: white or transparent, PNG."""
    size = 280
    scale = rng.uniform(1.3, 2.3)
    offset = rng.uniform(20, size - 20 - 100 * scale, 2)
    pen = int(rng.integers(8, 24))
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in strokes:
        shaken = _wobbly(stroke, rng, wobble=0.6)
        placed = [(offset[0] + x * scale, offset[1] + y * scale) for x, y in shaken]
        if filled:
            draw.polygon(placed, fill=255)
        draw.line(placed, fill=255, width=pen, joint="curve")
        for x, y in (placed[0], placed[-1]):
            draw.ellipse([x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2], fill=255)
    if rng.random() < 0.5:
        return encoded(Image.fromarray(255 - np.asarray(canvas)), "PNG")
    drawing = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    drawing.paste(Image.new("RGBA", (size, size), (0, 0, 0, 255)), mask=canvas)
    return encoded(drawing, "PNG")


def scribble(rng: np.random.Generator) -> bytes:
    """One smooth stroke through 5-10 random points (Catmull-Rom), wandering over the canvas."""
    anchors = rng.uniform(10, 90, (int(rng.integers(5, 11)), 2))
    padded = np.vstack([anchors[:1], anchors, anchors[-1:]])
    curve = []
    for k in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[k - 1], padded[k], padded[k + 1], padded[k + 2]
        for t in np.linspace(0, 1, 12, endpoint=False):
            curve.append(
                tuple(
                    0.5
                    * (
                        (2 * p1)
                        + (-p0 + p2) * t
                        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                        + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
                    )
                )
            )
    return drawn_strokes([curve], False, rng)


def samples(name: str, count: int, seed: int) -> Iterator[Sample]:
    """`count` files of the named set (label -1: not a digit)."""
    rng = np.random.default_rng([seed, list(SETS).index(name)])
    fonts = evaluation_fonts()
    for index in range(count):
        yield Sample(SETS[name](index, rng, fonts), -1)


def _letter(index: int, rng: np.random.Generator, fonts: list[Path]) -> bytes:
    return canvas_drawing(glyph_skeleton(LETTERS[index % len(LETTERS)], fonts[index % len(fonts)], rng), rng)


def _symbol(index: int, rng: np.random.Generator, fonts: list[Path]) -> bytes:
    return canvas_drawing(glyph_skeleton(SYMBOLS[index % len(SYMBOLS)], fonts[index % len(fonts)], rng), rng)


def _photographed(index: int, rng: np.random.Generator, fonts: list[Path]) -> bytes:
    return paper_photo(glyph_skeleton(LETTERS[(index * 7) % len(LETTERS)], fonts[index % len(fonts)], rng), rng)


def _shape(index: int, rng: np.random.Generator, fonts: list[Path]) -> bytes:
    return drawn_strokes(*shape_strokes(SHAPES[index % len(SHAPES)], rng), rng)


def _scribble(index: int, rng: np.random.Generator, fonts: list[Path]) -> bytes:
    return scribble(rng)


def _word(index: int, rng: np.random.Generator, fonts: list[Path]) -> bytes:
    return canvas_drawing(glyph_skeleton(WORDS[index % len(WORDS)], fonts[index % len(fonts)], rng, side=120), rng)


SETS: dict[str, Callable[[int, np.random.Generator, list[Path]], bytes]] = {
    "drawn_letters": _letter,
    "drawn_symbols": _symbol,
    "photographed_letters": _photographed,
    "shapes": _shape,
    "scribbles": _scribble,
    "words": _word,
}
