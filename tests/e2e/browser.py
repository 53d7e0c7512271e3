"""Helpers for the browser tests: headless Chromium via Playwright, axe-core checks, screenshots."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
AXE_JS = (Path(__file__).parent / "assets" / "axe-core" / "axe.min.js").read_text()
CHROMIUM = os.environ.get("REFNET_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if not Path(CHROMIUM).exists():
        return "Chromium is not installed (apt-get install chromium; .ci/run does this)"
    return None


async def check_a11y(page: Any, name: str) -> list[dict[str, Any]]:
    """Run axe-core on the page; fail on serious or critical violations. Returns all violations."""
    await page.add_script_tag(content=AXE_JS)
    result = await page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations'],"
        " runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
    )
    violations: list[dict[str, Any]] = result["violations"]
    bad = [v for v in violations if v.get("impact") in ("serious", "critical")]
    summary = [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["html"][:200] for n in v["nodes"][:3]],
        }
        for v in bad
    ]
    assert not bad, f"accessibility violations on {name}:\n" + json.dumps(summary, indent=2)
    return violations


async def snap(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
