"""A real Chromium (Debian's, driven by Playwright with executable_path) against a real `python -m service`.

Skipped, with one line saying how to get one, when no Chromium is installed: `make browser-test` and `.ci/run`
install it (apt-get install chromium). DIGIT_SERVE_CHROMIUM names another binary.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ServerProcess, start_service, wait_until_ready

CHROMIUM = os.environ.get("DIGIT_SERVE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("DIGIT_SERVE_BROWSER_ARTIFACTS", "/tmp/digit-serve-browser"))

NO_CHROMIUM = "no Chromium: install it with `apt-get install chromium` (make browser-test does)"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)


@pytest.fixture(scope="session")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The committed repository (both models), served by a real process."""
    server = start_service(tmp_path_factory.mktemp("page") / "server.log")
    try:
        wait_until_ready(server)
        yield server
    finally:
        server.stop()


# Module-scoped: Playwright's sync API keeps an event loop running in the main thread while it is open, and the
# asyncio tests that run after these need the thread's loop to themselves.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
