"""structlog setup shared by every process: JSON or console output, context ids, PII redaction."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["REDACTED_KEYS", "configure_logging", "get_logger"]

# Field names that may carry a youth's identifying details. Code should never log them; this is
# the second wall in case someone does.
REDACTED_KEYS = frozenset(
    {
        "first_name",
        "last_name",
        "date_of_birth",
        "dob",
        "phone",
        "email_address",
        "gender",
        "notes",
        "youth",
        "pii",
        "password",
        "api_key",
        "authorization",
        "token",
        "access_token",
        "secret",
        "zip",
        "lat",
        "lon",
        "location",
        "address",
        "body",
        "payload",
    }
)


def _scrub(value: Any, depth: int = 0) -> Any:
    # Nested structures too: a dict logged under an innocent key may hold a PII key.
    if depth > 8:
        return value
    if isinstance(value, dict):
        return {
            k: "[redacted]" if str(k).lower() in REDACTED_KEYS else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in REDACTED_KEYS:
            event_dict[key] = "[redacted]"
        elif isinstance(event_dict[key], dict | list | tuple):
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


# Terminal control characters (C0, DEL, C1) and the Unicode line separators and bidi overrides: from a request
# path or header they would forge log lines, recolour or clear the operator's terminal, or reorder text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape_one(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


class _Quoted:
    """A string the console renderer shows as its Python repr (quoted, every control character escaped),
    where it would have printed the bare text (it only quotes values with spaces or quotes)."""

    __slots__ = ("text",)

    def __init__(self, value: str) -> None:
        self.text = repr(value)

    def __repr__(self) -> str:
        return self.text


def _escape_control(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Console output prints strings as they are (JSON escapes them itself): show control characters as
    escapes (``\x1b``, ``\n``) so one record is one line, in the colours the renderer chose."""
    for key, value in event_dict.items():
        if isinstance(value, str) and _CONTROL.search(value):
            # The message (a library's record: uvicorn's access line carries the path) is printed bare.
            event_dict[key] = _CONTROL.sub(_escape_one, value) if key == "event" else _Quoted(value)
    return event_dict


# The handler configure_logging put on the root logger (replaced, not stacked, when called again).
_handler: logging.Handler | None = None


def configure_logging(fmt: str = "json", level: str = "INFO", service: str | None = None) -> None:
    """One format for every line: structlog's own events and stdlib logging records (uvicorn, asyncio,
    nats, ...) go through the same processors (context ids, PII redaction) and the same renderer."""
    global _handler
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        lvl = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any
    if fmt == "console":
        # Before format_exc_info, so a traceback keeps its own line breaks.
        shared.append(_escape_control)
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries log through stdlib: their records are rendered by structlog's ProcessorFormatter with
    # the chain above, at WARNING so they cannot echo request bodies. Their text is kept as the event;
    # `extra` fields are not copied (a library's extras may hold request data).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    _handler = handler
    if service:
        structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
