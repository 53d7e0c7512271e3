"""Every event has a service allowed to publish it: an event nobody may publish would sit in the outbox
forever (the relay of its owner claims it; no owner, no relay) — the silent loss this project forbids."""

from __future__ import annotations

from shared import events
from shared.bus import CONSUMERS, PUBLISHES
from shared.events import SUBJECT_PREFIX


def _tags() -> set[str]:
    return {
        obj.__struct_config__.tag
        for obj in vars(events).values()
        if isinstance(obj, type)
        and issubclass(obj, events.Event)
        and obj is not events.Event
        and isinstance(obj.__struct_config__.tag, str)
    }


def test_every_event_has_a_publisher() -> None:
    published = {subject for subjects in PUBLISHES.values() for subject in subjects}
    missing = sorted(tag for tag in _tags() if SUBJECT_PREFIX + tag not in published)
    assert not missing, f"events no service may publish: {missing}"


def test_every_consumed_subject_is_published_by_someone() -> None:
    published = {subject for subjects in PUBLISHES.values() for subject in subjects}
    for spec in CONSUMERS.values():
        assert set(spec.subjects) <= published, (spec.durable, set(spec.subjects) - published)
