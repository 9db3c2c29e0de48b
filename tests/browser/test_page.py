"""The draw-a-digit page in a real Chromium: drawing, uploads, errors, compare, feature maps, keyboard, and that
nothing leaves the origin or breaks the console."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import needs_chromium
from tests.drawing import as_person_would
from tests.integration.conftest import ServerProcess

pytestmark = needs_chromium

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPOSITORY_ROOT / "docs" / "page.png"


@pytest.fixture
def page(browser: Any, page_server: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    problems: list[str] = []
    foreign: list[str] = []
    opened.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.on(
        "request",
        lambda request: foreign.append(request.url) if not _same_origin(request.url, page_server.url) else None,
    )
    response = opened.goto(page_server.url + "/")
    assert response is not None and response.status == 200
    opened.wait_for_selector("[data-testid=model] option", state="attached")
    opened.problems = problems  # type: ignore[attr-defined]
    opened.foreign = foreign  # type: ignore[attr-defined]
    yield opened
    context.close()
    # Whatever the test did: no console error, no uncaught exception, and not one request to another origin.
    assert problems == [], problems
    assert foreign == [], foreign


def _same_origin(url: str, origin: str) -> bool:
    return url.startswith(origin + "/") or url.startswith(("data:", "blob:"))


def draw(page: Any, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes, in fractions of the pad's size."""
    box = page.get_by_test_id("pad").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=6)
        page.mouse.up()


SEVEN = [[(0.25, 0.22), (0.75, 0.22), (0.45, 0.82)]]
ONE = [[(0.52, 0.15), (0.5, 0.85)]]
ZERO = [[(0.5 + 0.2 * math.sin(t / 20 * 2 * math.pi), 0.5 - 0.32 * math.cos(t / 20 * 2 * math.pi)) for t in range(21)]]


def predicted(page: Any) -> str:
    expect(page.get_by_test_id("prediction").first).to_have_text(re.compile(r"^\d$"))
    return str(page.get_by_test_id("prediction").first.text_content())


@pytest.mark.parametrize(("strokes", "digit"), [(SEVEN, "7"), (ONE, "1"), (ZERO, "0")])
def test_a_drawn_digit_is_predicted(page: Any, strokes: list, digit: str) -> None:
    draw(page, strokes)
    expect(page.get_by_test_id("prediction").first).to_have_text(digit)
    assert predicted(page) == digit
    assert page.locator("img.input").first.get_attribute("src").startswith("data:image/png;base64,")
    assert "reads " + digit in page.locator("#status").text_content()
    assert page.problems == [] and page.foreign == []


HASH = [
    [(0.38, 0.12), (0.3, 0.88)],
    [(0.68, 0.12), (0.6, 0.88)],
    [(0.12, 0.36), (0.88, 0.36)],
    [(0.12, 0.64), (0.88, 0.64)],
]
STAR = [
    [
        (
            0.5 + (0.42 if k % 2 == 0 else 0.17) * math.sin(k * math.pi / 5),
            0.52 - (0.42 if k % 2 == 0 else 0.17) * math.cos(k * math.pi / 5),
        )
        for k in range(11)
    ]
]


@pytest.mark.parametrize("strokes", [HASH, STAR], ids=["hash", "star"])
def test_a_drawing_that_is_not_a_digit_is_called_out(page: Any, strokes: list) -> None:
    notice = page.get_by_test_id("not-a-digit").first
    draw(page, SEVEN)
    expect(page.get_by_test_id("prediction").first).to_have_text("7")
    expect(notice).to_be_hidden()
    page.get_by_test_id("clear").click()
    draw(page, strokes)
    expect(notice).to_be_visible()
    expect(notice).to_have_text("That doesn't look like a digit. Draw a single digit, 0 to 9.")
    expect(page.locator("#status")).to_contain_text("doesn't look like a digit")
    page.get_by_test_id("clear").click()
    draw(page, ZERO)
    expect(page.get_by_test_id("prediction").first).to_have_text("0")
    expect(notice).to_be_hidden()


def _file_bytes(digit: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "PNG":
        Image.fromarray(255 - digit).resize((140, 140)).save(buffer, format="PNG")
    else:
        as_person_would(digit, seed=5).convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@pytest.mark.parametrize(("index", "image_format", "mime"), [(0, "PNG", "image/png"), (1, "JPEG", "image/jpeg")])
def test_an_uploaded_file_is_predicted(page: Any, mnist_sample: dict, index: int, image_format: str, mime: str) -> None:
    threes = np.flatnonzero(mnist_sample["y_test"] == 3)
    digit = mnist_sample["x_test"][threes[index]]
    page.get_by_test_id("file").set_input_files(
        {"name": f"three.{image_format.lower()}", "mimeType": mime, "buffer": _file_bytes(digit, image_format)}
    )
    expect(page.get_by_test_id("prediction").first).to_have_text("3")
    assert page.problems == []


def test_a_text_file_shows_the_servers_message(page: Any) -> None:
    page.get_by_test_id("file").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a digit"}
    )
    expect(page.locator("#error")).not_to_have_text("")
    message = page.locator("#error").text_content()
    assert "cannot read text/plain" in message  # the server's own words, not a stack trace
    assert page.get_by_test_id("prediction").count() == 0
    # Chromium itself logs the refused upload as a failed resource; that line, and only it, is expected here.
    page.problems[:] = [line for line in page.problems if "status of 415" not in line]


def test_compare_shows_both_models_side_by_side(page: Any) -> None:
    page.get_by_test_id("model").select_option("compare")
    draw(page, SEVEN)
    expect(page.get_by_test_id("prediction")).to_have_count(2)
    names = page.locator(".model-name").all_text_contents()
    assert [name.split(" ")[0] for name in names] == ["mnist_convnet", "mnist_no_maxpool"]
    facts = page.locator(".model-facts").all_text_contents()
    assert "93,322 parameters" in facts[0] and "2,038,922 parameters" in facts[1]
    assert all("test accuracy" in fact for fact in facts)


def test_the_feature_map_panel_shows_every_layer_with_its_shape(page: Any) -> None:
    draw(page, SEVEN)
    predicted(page)
    page.locator("#maps-panel summary").click()
    page.wait_for_selector("[data-testid=feature-maps] section.layer")
    layers = page.locator("[data-testid=feature-maps] section.layer")
    shapes = [
        (layers.nth(i).get_attribute("data-layer"), layers.nth(i).get_attribute("data-shape"))
        for i in range(layers.count())
    ]
    assert shapes == [
        ("conv2d", "26x26x32"),
        ("max_pooling2d", "13x13x32"),
        ("conv2d_1", "11x11x64"),
        ("max_pooling2d_1", "5x5x64"),
        ("conv2d_2", "3x3x64"),
    ]
    assert layers.nth(0).locator("canvas").count() == 32
    assert layers.nth(0).locator("h3").text_content() == "conv2d (None, 26, 26, 32)"


def test_escape_clears_and_ctrl_z_undoes(page: Any) -> None:
    draw(page, [[(0.5, 0.15), (0.5, 0.85)], [(0.2, 0.5), (0.8, 0.5)]])
    predicted(page)
    page.get_by_test_id("pad").focus()
    page.keyboard.press("Control+z")  # the second stroke goes: a 1 is left
    expect(page.get_by_test_id("prediction").first).to_have_text("1")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("prediction")).to_have_count(0)
    pad = np.asarray(Image.open(io.BytesIO(page.get_by_test_id("pad").screenshot())).convert("L"))
    assert pad[4:-4, 4:-4].min() >= 250  # white inside its border: every stroke is gone


def test_the_page_sends_its_security_headers(page: Any, page_server: ServerProcess) -> None:
    import httpx

    for path in ("/", "/static/app.js", "/static/style.css"):
        headers = httpx.get(page_server.url + path).headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_screenshots_of_desktop_and_phone(browser: Any, page_server: ServerProcess, artifacts: Path) -> None:
    for name, viewport in (("desktop", {"width": 1280, "height": 800}), ("phone", {"width": 390, "height": 844})):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(page_server.url + "/")
        page.wait_for_selector("[data-testid=model] option", state="attached")
        draw(page, SEVEN)
        expect(page.get_by_test_id("prediction").first).to_have_text("7")
        page.locator("#maps-panel summary").click()
        page.wait_for_selector("[data-testid=feature-maps] section.layer")
        # Usable on a phone: the pad fits the screen and nothing scrolls sideways.
        for part in ("main", "[data-testid=pad]"):
            box = page.locator(part).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], f"{name}: {part} is {box}"
        page.screenshot(path=str(artifacts / f"page-{name}.png"), full_page=name == "phone")
        if name == "desktop":
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
        context.close()


def test_about_shows_the_summary_table_and_the_versions_pictures(page: Any) -> None:
    with page.expect_response(lambda response: response.url.endswith("/assets/confusion_matrix.png")) as picture:
        page.locator("#about-panel summary").click()
    assert picture.value.status == 200
    rows = page.locator("#about table tbody tr")
    expect(rows.first).to_have_text(re.compile(r"image \(InputLayer\)"))
    expect(page.locator("#about h3").first).to_have_text(
        re.compile(r"mnist_convnet version \d+: test accuracy 99\.\d\d%")
    )
    assert rows.count() == 9  # the seed's input, 3 convolutions, 2 poolings, flatten and 2 dense layers
    assert page.problems == [] and page.foreign == []
