"""Every offending field of a request body at once, in words for a partner's developer.

msgspec's typed decoder (the one that decides what is accepted, see ``core/body.py``) stops at the first
error. When it refuses a body, ``field_errors`` walks the decoded JSON against the same type, field by
field, and reports each missing required field, each unknown field and each wrong value it finds, with
a message that names what was expected (never an internal regular expression). A field's own wording
for a format comes from its ``Meta(extra={"invalid": "must be ..."})``.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

from services.intake.core.problems import Problem, field_from_msgspec

__all__ = ["field_errors", "friendly", "refusal"]

_TYPE_WORDS = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "object": "a JSON object",
    "array": "a JSON array",
    "null": "null",
    "datetime": "a date and time with a time zone (RFC 3339, e.g. 2026-01-31T10:00:00Z)",
    "date": "a date (YYYY-MM-DD)",
    "uuid": "a UUID",
}
_JSON_NAMES = {
    bool: "true/false",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}
_NO_MEMBERS = (type(None), msgspec.UnsetType)


def _strip(tp: Any) -> tuple[Any, list[msgspec.Meta]]:
    """The type under any ``Annotated`` layers, and their msgspec constraints."""
    metas: list[msgspec.Meta] = []
    while get_origin(tp) is Annotated:
        base, *extra = get_args(tp)
        metas.extend(m for m in extra if isinstance(m, msgspec.Meta))
        tp = base
    return tp, metas


def _members(tp: Any) -> tuple[Any, ...] | None:
    """A union's members, or None when ``tp`` is not a union."""
    if get_origin(tp) in (Union, types.UnionType):
        return get_args(tp)
    return None


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _literals(tp: Any) -> list[str]:
    """The allowed values of a Literal (or a union of Literals and None)."""
    base, _ = _strip(tp)
    members = _members(base)
    if members is not None:
        return [v for m in members for v in _literals(m)]
    if get_origin(base) is Literal:
        return [str(v) for v in get_args(base)]
    return []


def _hint(tp: Any) -> str | None:
    """A field's own wording for a value in the wrong format (``Meta(extra={"invalid": ...})``)."""
    base, metas = _strip(tp)
    for meta in metas:
        if meta.extra and "invalid" in meta.extra:
            return str(meta.extra["invalid"])
    members = _members(base)
    if members is not None:
        for m in members:
            hint = _hint(m)
            if hint:
                return hint
    return None


def _got(value: Any) -> str:
    return _JSON_NAMES.get(type(value), "a value of another type")


def friendly(message: str, tp: Any, value: Any) -> str:
    """msgspec's refusal of ``value`` as ``tp`` in words for a developer (no regular expressions)."""
    message = message.split(" - at `", 1)[0]
    if message.startswith("Invalid enum value"):
        allowed = _literals(tp)
        return f"must be one of: {', '.join(sorted(allowed))}" if allowed else "is not an accepted value"
    if "matching regex" in message:
        return _hint(tp) or "is not in the expected format"
    if m := re.fullmatch(r"Expected `([^`]+)`, got `([^`]+)`", message):
        allowed = _literals(tp)
        if allowed:  # a code list: name its codes rather than "a string"
            return f"must be one of: {', '.join(sorted(allowed))}"
        wanted = " or ".join(_TYPE_WORDS.get(t.strip(), t.strip()) for t in m.group(1).split("|"))
        return f"must be {wanted}, not {_got(value)}"
    if m := re.fullmatch(r"Expected `(?:str|array|object)` of length (>=|<=) (\d+)", message):
        n = int(m.group(2))
        noun = (
            "item"
            if message.startswith("Expected `array`") or message.startswith("Expected `object`")
            else "character"
        )
        if m.group(1) == ">=":
            return (
                "must not be empty"
                if n == 1 and noun == "character"
                else f"must have at least {n} {noun}{'s' * (n != 1)}"
            )
        return f"must have at most {n} {noun}{'s' * (n != 1)}"
    if m := re.fullmatch(r"Expected `(?:int|float)` (>=|<=|>|<) (-?[\d.]+)", message):
        bound = m.group(2).removesuffix(".0")
        words = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than"}[m.group(1)]
        return f"must be {words} {bound}"
    if message == "Invalid RFC3339 encoded date":
        return "must be a date as YYYY-MM-DD, e.g. 2009-04-01"
    if message == "Invalid RFC3339 encoded datetime":
        return "must be a date and time with a time zone (RFC 3339), e.g. 2026-01-31T10:00:00Z"
    if message == "Expected `datetime` with a timezone component":
        return "must include a time zone, e.g. 2026-01-31T10:00:00Z or 2026-01-31T02:00:00-08:00"
    if message == "Invalid UUID":
        return "must be a UUID"
    return message[0].lower() + message[1:] if message else "is not valid"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _walk(value: Any, tp: Any, path: str, out: list[dict[str, str]]) -> None:
    base, _ = _strip(tp)
    members = _members(base)
    if members is not None:
        if value is None and type(None) in members:
            return
        rest = [m for m in members if m not in _NO_MEMBERS]
        inner = _strip(rest[0])[0] if len(rest) == 1 else None
        if inner is not None and (_is_struct(inner) or get_origin(inner) is list):
            if value is None:
                out.append({"field": path, "message": "must not be null"})
                return
            _walk(value, rest[0], path, out)
            return
    elif _is_struct(base):
        _walk_struct(value, base, path, out)
        return
    elif get_origin(base) is list and isinstance(value, list):
        (item_type,) = get_args(base) or (Any,)
        before = len(out)
        for i, item in enumerate(value):
            _walk(item, item_type, f"{path}[{i}]", out)
        if len(out) > before:
            return  # the items' errors say it; the list's own constraints are checked once they pass
    try:
        msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError as exc:
        out.append({"field": path, "message": friendly(str(exc), tp, value)})


def _walk_struct(value: Any, cls: type[msgspec.Struct], path: str, out: list[dict[str, str]]) -> None:
    if not isinstance(value, Mapping):
        out.append({"field": path, "message": f"must be a JSON object, not {_got(value)}"})
        return
    fields = msgspec.structs.fields(cls)
    known = {f.encode_name for f in fields}
    for f in fields:
        name = _join(path, f.encode_name)
        if f.encode_name not in value:
            if f.required:
                out.append({"field": name, "message": "is required"})
            continue
        _walk(value[f.encode_name], f.type, name, out)
    if cls.__struct_config__.forbid_unknown_fields:
        for key in value:
            if key not in known:
                out.append(
                    {
                        "field": _join(path, str(key)),
                        "message": "is not a field of this request (unknown fields are refused)",
                    }
                )


def field_errors(doc: Any, annotation: Any) -> list[dict[str, str]]:
    """Every error found in the decoded JSON ``doc`` as the type ``annotation``: missing required fields,
    unknown fields and wrong values, each ``{"field", "message"}`` (``field`` a dotted path with ``[i]``
    for list items, "" for the body itself). Empty when the walk finds nothing (the caller then falls
    back to the decoder's own error)."""
    out: list[dict[str, str]] = []
    _walk(doc, annotation, "", out)
    return out


def refusal(doc: Any, annotation: Any, exc: msgspec.ValidationError) -> Problem:
    """The 422 for a body the typed decoder refused: every offending field found, or the decoder's own
    (first) error when the walk finds nothing more precise."""
    errors = field_errors(doc, annotation)
    if not errors:
        errors = [field_from_msgspec(str(exc))]
        errors[0]["message"] = friendly(errors[0]["message"], Any, None)
    shown = "; ".join(f"{e['field'] or 'the body'} {e['message']}" for e in errors[:3])
    more = len(errors) - 3
    detail = f"Invalid request: {shown}" + (f"; and {more} more (see errors)" if more > 0 else "") + "."
    return Problem(422, detail, errors=errors)
