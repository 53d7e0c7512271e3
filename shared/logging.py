"""structlog setup shared by every process: JSON or console output, context ids, PII redaction."""

from __future__ import annotations

import logging
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
