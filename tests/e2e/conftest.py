"""The browser for the page tests, one per module; it fails, never skips, when Chromium or Playwright is
missing: a skipped page test passes with nothing checked, and CI installs both (.ci/run)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, browser_missing


def _require_browser() -> None:
    missing = browser_missing()
    if missing is not None:
        pytest.fail(f"the browser tests cannot run: {missing}")


@pytest.fixture
def browser_present() -> None:
    _require_browser()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    _require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()
