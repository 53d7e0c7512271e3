"""The event envelope: round trips, subjects, forward compatibility and no PII on the bus."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import events as ev
from shared.events import (
    AnyEvent,
    AssignmentAccepted,
    AssignmentDeclined,
    Event,
    ReferralAssigned,
    ReferralReceived,
    ReferralStatusChanged,
    ReferralUnroutable,
    decode_event,
    encode_event,
    subject_for,
)

T0 = datetime(2026, 11, 20, 18, 0, 0, 123456, tzinfo=UTC)


def _id() -> str:
    return str(uuid.uuid4())


_HAND_WRITTEN: list[Event] = [
    ReferralReceived(referral_id=_id(), partner_id=_id(), urgency="urgent", occurred_at=T0, trace_id="abc"),
    ReferralAssigned(
        referral_id=_id(),
        assignment_id=_id(),
        case_manager_id=_id(),
        region="south_la",
        respond_by=T0 + timedelta(hours=4),
    ),
    ReferralUnroutable(referral_id=_id(), reason="out_of_area"),
    ReferralUnroutable(referral_id=_id(), reason="no_eligible_case_manager", region="south_la"),
    ReferralStatusChanged(referral_id=_id(), partner_id=_id(), status="assigned", previous_status="received"),
    AssignmentAccepted(referral_id=_id(), assignment_id=_id(), case_manager_id=_id()),
    AssignmentDeclined(referral_id=_id(), assignment_id=_id(), case_manager_id=_id()),
]


def _auto_sample(cls: type[Event]) -> Event:
    """An instance with every required field filled, for event types added after these tests were written."""
    kwargs: dict[str, Any] = {}
    for f in msgspec.structs.fields(cls):
        if f.required:
            if f.type is datetime:
                kwargs[f.name] = T0
            elif f.type is date:
                kwargs[f.name] = T0.date()
            elif f.type is int:
                kwargs[f.name] = 1
            else:
                kwargs[f.name] = _id()
    return cls(**kwargs)


SAMPLES: list[Event] = _HAND_WRITTEN + [
    _auto_sample(cls) for cls in get_args(AnyEvent) if cls not in {type(e) for e in _HAND_WRITTEN}
]

CONTRACT_SUBJECTS = {
    "refnet.referral.received",
    "refnet.referral.assigned",
    "refnet.referral.unroutable",
    "refnet.assignment.accepted",
    "refnet.assignment.declined",
    "refnet.referral.status_changed",
}

PII_NAMES = (
    "first_name",
    "last_name",
    "date_of_birth",
    "dob",
    "phone",
    "notes",
    "zip",
    "lat",
    "lon",
    "email",
    "address",
    "gender",
    "name",
)


def _all_event_classes() -> set[type[Event]]:
    found: set[type[Event]] = set()
    todo: list[type[Event]] = [Event]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def _ids(e: Event) -> str:
    return type(e).__name__


@pytest.mark.parametrize("event", SAMPLES, ids=_ids)
def test_round_trip(event: Event) -> None:
    data = encode_event(event)
    back = decode_event(data)
    assert type(back) is type(event)
    assert back == event
    assert encode_event(back) == data


@pytest.mark.parametrize("event", SAMPLES, ids=_ids)
def test_envelope_fields_on_the_wire(event: Event) -> None:
    doc = json.loads(encode_event(event))
    for key in ("event_id", "type", "version", "occurred_at"):
        assert key in doc
    assert doc["type"] == ev.tag_of(event)
    assert isinstance(doc["version"], int)
    assert doc["version"] >= 1
    uuid.UUID(doc["event_id"])
    # RFC 3339 with an offset, so a consumer in any zone reads the same instant.
    parsed = datetime.fromisoformat(doc["occurred_at"].replace("Z", "+00:00"))
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("event", SAMPLES, ids=_ids)
def test_subject_for(event: Event) -> None:
    assert subject_for(event) == "refnet." + json.loads(encode_event(event))["type"]


def test_contract_subjects_all_exist() -> None:
    subjects = {subject_for(e) for e in SAMPLES}
    assert subjects >= CONTRACT_SUBJECTS


def test_every_event_class_is_decodable() -> None:
    """An Event subclass missing from AnyEvent could be published but never consumed."""
    assert _all_event_classes() == set(get_args(AnyEvent))


def test_every_event_class_has_a_sample() -> None:
    assert {type(e) for e in SAMPLES} == set(get_args(AnyEvent))


def test_tags_are_unique_and_under_known_families() -> None:
    tags = [str(cls.__struct_config__.tag) for cls in get_args(AnyEvent)]
    assert len(tags) == len(set(tags))
    for tag in tags:
        assert tag.split(".")[0] in {
            "referral",
            "assignment",
            "notification",
            "partner",
            "consent",
            "case",
            "webhook",
            "protocol",
        }


@pytest.mark.parametrize("event", SAMPLES, ids=_ids)
def test_newer_producer_extra_fields_are_ignored(event: Event) -> None:
    doc = json.loads(encode_event(event))
    doc["added_in_v2"] = {"nested": [1, 2, 3]}
    doc["version"] = 2
    back = decode_event(json.dumps(doc).encode())
    assert type(back) is type(event)
    assert back.event_id == event.event_id
    assert back.version == 2


def test_unknown_event_type_is_rejected() -> None:
    doc = json.loads(encode_event(SAMPLES[0]))
    doc["type"] = "referral.teleported"
    with pytest.raises(msgspec.ValidationError):
        decode_event(json.dumps(doc).encode())


def test_missing_required_id_is_rejected() -> None:
    doc = json.loads(encode_event(SAMPLES[0]))
    del doc["referral_id"]
    with pytest.raises(msgspec.ValidationError, match="referral_id"):
        decode_event(json.dumps(doc).encode())


def test_defaults_fresh_id_and_aware_time() -> None:
    a = ReferralReceived(referral_id="r", partner_id="p")
    b = ReferralReceived(referral_id="r", partner_id="p")
    assert a.event_id != b.event_id
    uuid.UUID(a.event_id)
    assert a.occurred_at.tzinfo is not None
    assert abs(datetime.now(UTC) - a.occurred_at) < timedelta(minutes=1)
    assert a.version == 1


def _looks_like_pii(field_name: str) -> str | None:
    name = field_name.lower()
    parts = name.split("_")
    for pii in PII_NAMES:
        pii_parts = pii.split("_")
        n = len(pii_parts)
        if any(parts[i : i + n] == pii_parts for i in range(len(parts) - n + 1)):
            return pii
    return None


_CLASSES = sorted(_all_event_classes() | {Event}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _CLASSES, ids=[c.__name__ for c in _CLASSES])
def test_no_event_field_suggests_pii(cls: type[Event]) -> None:
    offenders = {f.name: pii for f in msgspec.structs.fields(cls) if (pii := _looks_like_pii(f.name))}
    assert offenders == {}, f"{cls.__name__} carries PII-like fields {offenders}"


def test_pii_detector_itself() -> None:
    assert _looks_like_pii("first_name") == "first_name"
    assert _looks_like_pii("youth_phone") == "phone"
    assert _looks_like_pii("home_zip") == "zip"
    assert _looks_like_pii("email") == "email"
    assert _looks_like_pii("related_id") is None  # "lat" inside a word is not a field named lat
    assert _looks_like_pii("case_manager_id") is None


_text = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(get_args(AnyEvent)),
    st.data(),
)
def test_round_trip_property(cls: type[Event], data: st.DataObject) -> None:
    kwargs: dict[str, Any] = {}
    for f in msgspec.structs.fields(cls):
        if f.type is datetime:
            kwargs[f.name] = data.draw(st.datetimes(timezones=st.just(UTC)))
        elif f.type is int:
            kwargs[f.name] = data.draw(st.integers(1, 1000))
        elif f.type is date:
            kwargs[f.name] = data.draw(st.dates())
        elif f.type is bool:
            kwargs[f.name] = data.draw(st.booleans())
        elif f.type is str:
            kwargs[f.name] = data.draw(_text)
        elif f.type == (str | None):
            kwargs[f.name] = data.draw(st.none() | _text)
        else:  # pragma: no cover - a new field type: extend this test
            raise AssertionError(f"{cls.__name__}.{f.name}: no strategy for {f.type!r}")
    event = cls(**kwargs)
    assert decode_event(encode_event(event)) == event


# Events nobody consumes today: published for the record (and for consumers yet to come).
_UNCONSUMED = {"assignment.accepted"}


def test_every_event_reaches_a_consumer() -> None:
    """An event type no durable consumer filters for would be published and never acted on."""
    from shared.bus import CONSUMERS

    consumed = {s for spec in CONSUMERS.values() for s in spec.subjects}
    tags = {str(cls.__struct_config__.tag) for cls in get_args(AnyEvent)}
    assert {t for t in tags if ev.SUBJECT_PREFIX + t not in consumed} == _UNCONSUMED
    assert consumed <= {ev.SUBJECT_PREFIX + t for t in tags}, "a consumer filters for a subject no event has"


def test_command_subjects_stay_outside_the_stream() -> None:
    """A request on a stream subject would be stored and answered by JetStream's PubAck."""
    from shared.bus import stream_config
    from shared.commands import ASSIGN_SUBJECT, REPLAY_SUBJECT

    (pattern,) = stream_config().subjects or []
    assert pattern == "refnet.>"
    for subject in (ASSIGN_SUBJECT, REPLAY_SUBJECT):
        assert not subject.startswith("refnet.")
