"""Browser tests fail, never skip, when Chromium or Playwright is missing: a skipped page test passes
with nothing checked, and CI installs both (.ci/run)."""

from __future__ import annotations

import pytest

from tests.e2e.browser import browser_missing


@pytest.fixture
def browser_present() -> None:
    missing = browser_missing()
    if missing is not None:
        pytest.fail(f"the browser tests cannot run: {missing}")
