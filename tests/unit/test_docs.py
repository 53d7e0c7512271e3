"""docs/ documents the external interface and stays complete as it grows: every event, every command,
every page in the index (the configuration table has its own test in test_config.py)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import msgspec

from refnet.cli import build_parser
from shared import events

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _event_classes() -> dict[str, type[events.Event]]:
    found: dict[str, type[events.Event]] = {}
    for obj in vars(events).values():
        if isinstance(obj, type) and issubclass(obj, events.Event) and obj is not events.Event:
            tag = obj.__struct_config__.tag
            if isinstance(tag, str):
                found[tag] = obj
    return found


def test_every_event_has_its_section() -> None:
    text = (DOCS / "events.md").read_text()
    documented = set(re.findall(r"^### refnet\.([a-z_.]+)$", text, re.M))
    classes = _event_classes()
    assert classes, "no events found"
    assert set(classes) <= documented, f"undocumented events: {set(classes) - documented}"
    envelope = {"event_id", "version", "occurred_at", "trace_id"}
    for tag, cls in classes.items():
        section = text.split(f"### refnet.{tag}\n", 1)[1].split("\n### ", 1)[0]
        own = [f.encode_name for f in msgspec.structs.fields(cls) if f.name not in envelope]
        missing = [name for name in own if f"`{name}`" not in section]
        assert not missing, f"refnet.{tag}: fields not described: {missing}"


def test_every_command_is_described() -> None:
    text = (DOCS / "cli.md").read_text()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name in sub.choices if f"`refnet {name}" not in text]
    assert not missing, f"commands missing from docs/cli.md: {missing}"


def test_every_page_is_in_the_index() -> None:
    index = (DOCS / "README.md").read_text()
    pages = sorted(p.name for p in DOCS.glob("*.md") if p.name != "README.md")
    missing = [name for name in pages if f"]({name})" not in index]
    assert not missing, f"docs/README.md does not list: {missing}"
    # The index names the interface pages every issue adds, present or on their way.
    for name in (
        "api.md",
        "events.md",
        "webhooks.md",
        "cli.md",
        "configuration.md",
        "accounts.md",
        "security.md",
        "fhir.md",
        "protocol.md",
        "evaluation.md",
    ):
        assert f"]({name})" in index, name


def test_the_readme_links_the_docs() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    for link in ("docs/README.md", "docs/api.md", "docs/cli.md", "docs/configuration.md", "docs/events.md"):
        assert f"]({link}" in readme, link
