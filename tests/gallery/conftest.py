"""The gallery's tests drive Debian's chromium (/usr/bin/chromium) through Playwright against the
embedded service. Without the browser they skip, saying how to install it; with
KGAN_TEST_REQUIRE_BROWSER=1 (CI sets it) its absence is a failure instead."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._service import EmbeddedService, embedded_service

CHROMIUM = Path(os.environ.get("KGAN_TEST_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="package")
def chromium_path() -> Path:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    found = shutil.which("chromium")
    if found:
        return Path(found)
    why = f"no chromium at {CHROMIUM}: install Debian's with `apt-get install -y chromium`"
    if os.environ.get("KGAN_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"KGAN_TEST_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)


@pytest.fixture(scope="package")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=str(chromium_path), headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def service(tmp_path_factory, chromium_path) -> Iterator[EmbeddedService]:
    # Depends on chromium_path so a machine without the browser skips before starting anything.
    with embedded_service(tmp_path_factory.mktemp("gallery-service")) as running:
        yield running


@pytest.fixture
def page(browser):
    """A fresh browser context (its own sessionStorage) whose page records script errors."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)  # a bound for a busy machine; each wait ends on its event
    page.script_errors = []
    page.on("pageerror", lambda error: page.script_errors.append(str(error)))
    # A refused request (the wrong-key test's 401) is logged by the browser, not by our code.
    page.on("console", lambda msg: msg.type == "error" and not msg.text.startswith("Failed to load resource")
            and page.script_errors.append(msg.text))
    yield page
    context.close()
