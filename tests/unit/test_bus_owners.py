"""Every event has a service allowed to publish it: an event nobody may publish would sit in the outbox
forever (the relay of its owner claims it; no owner, no relay) — the silent loss this project forbids."""

from __future__ import annotations

from typing import get_args

from shared.bus import CONSUMERS, PUBLISHES
from shared.events import SUBJECT_PREFIX, AnyEvent

# The union intake, routing and notify decode with: an event outside it could not be read at all.
SUBJECTS = {SUBJECT_PREFIX + cls.__struct_config__.tag for cls in get_args(AnyEvent)}


def test_every_event_has_a_publisher() -> None:
    published = {subject for subjects in PUBLISHES.values() for subject in subjects}
    missing = sorted(SUBJECTS - published)
    assert not missing, f"events no service may publish: {missing}"


def test_every_consumed_subject_is_published_by_someone() -> None:
    published = {subject for subjects in PUBLISHES.values() for subject in subjects}
    for spec in CONSUMERS.values():
        assert set(spec.subjects) <= published, (spec.durable, set(spec.subjects) - published)
