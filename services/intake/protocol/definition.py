"""The versioned protocol file (steps, roles, clocks, escalation), loaded and validated."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import msgspec

__all__ = [
    "RECEIPT",
    "ROLES",
    "Protocol",
    "ProtocolError",
    "ProtocolFile",
    "Step",
    "load_protocol",
    "parse_protocol",
]

_SHIPPED = "protocol.toml"
RECEIPT = "receipt"
ROLES = ("case_manager", "supervisor", "admin")
Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Role = Literal["case_manager", "supervisor", "admin"]
Escalate = Literal["case_manager", "supervisor"]


class ProtocolError(ValueError):
    """The protocol file is unreadable or invalid; the message says which and why."""


class Step(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: Code
    roles: Annotated[tuple[Role, ...], msgspec.Meta(min_length=1)]
    # "receipt" or another step's code; with clock_minutes (no minutes: the step has no due time).
    clock_from: str = RECEIPT
    clock_minutes: Annotated[int, msgspec.Meta(ge=0, le=366 * 24 * 60)] | None = None
    reference_required: bool = False
    outcomes: tuple[Code, ...] = ()
    escalate_to: tuple[Escalate, ...] = ("case_manager", "supervisor")


class Protocol(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Code
    min_age: Annotated[int, msgspec.Meta(ge=0, le=130)]
    max_age: Annotated[int, msgspec.Meta(ge=0, le=130)]
    steps: tuple[Step, ...] = ()


class ProtocolFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    protocols: tuple[Protocol, ...] = ()

    def for_age(self, age_years: int | None) -> Protocol | None:
        """The first protocol whose age range holds ``age_years`` (unknown age: none)."""
        if age_years is None:
            return None
        for p in self.protocols:
            if p.min_age <= age_years <= p.max_age:
                return p
        return None

    def step(self, code: str) -> Step | None:
        for p in self.protocols:
            for s in p.steps:
                if s.code == code:
                    return s
        return None


def _check(doc: ProtocolFile) -> list[str]:
    problems: list[str] = []
    for p in doc.protocols:
        if p.min_age > p.max_age:
            problems.append(f"protocol {p.name}: min_age is above max_age")
        codes = [s.code for s in p.steps]
        for s in p.steps:
            if codes.count(s.code) > 1:
                problems.append(f"protocol {p.name}: step {s.code} appears more than once")
            if s.clock_from != RECEIPT:
                if s.clock_from not in codes:
                    problems.append(
                        f"step {s.code}: clock_from {s.clock_from!r} is neither receipt nor a step"
                    )
                elif s.clock_from == s.code:
                    problems.append(f"step {s.code}: its clock cannot start from itself")
    return sorted(set(problems))


def parse_protocol(data: bytes, origin: str = "(shipped)") -> ProtocolFile:
    try:
        doc = msgspec.toml.decode(data, type=ProtocolFile)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"protocol file {origin}: {exc}") from None
    problems = _check(doc)
    if problems:
        raise ProtocolError(f"protocol file {origin}: " + "; ".join(problems))
    return doc


@functools.cache
def load_protocol(path: str = "") -> ProtocolFile:
    """The shipped protocol, or the one in the file at ``path`` (parsed once per process)."""
    if not path:
        return parse_protocol(resources.files(__package__).joinpath(_SHIPPED).read_bytes())
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProtocolError(f"protocol file {path}: cannot read: {exc.strerror}") from None
    return parse_protocol(data, path)
