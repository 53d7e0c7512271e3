"""The one logger setup: PII keys are redacted in JSON and console output."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from shared.logging import REDACTED_KEYS, _redact, configure_logging, get_logger

SECRET = "Zyxwandra"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def _lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("key", sorted(REDACTED_KEYS))
def test_every_pii_key_is_redacted_in_json(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "DEBUG")
    get_logger("test").info("referral.seen", **{key: SECRET}, referral_id="r-1")
    err = capsys.readouterr().err
    assert SECRET not in err
    (line,) = _lines(err)
    assert line[key] == "[redacted]"
    assert line["referral_id"] == "r-1"
    assert line["event"] == "referral.seen"


def test_first_name_in_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("console", "INFO")
    get_logger("test").warning("referral.seen", first_name="X-Quellmorrow-X", region="south_la")
    err = capsys.readouterr().err
    assert "X-Quellmorrow-X" not in err
    assert "[redacted]" in err
    assert "south_la" in err


def test_keys_are_matched_case_insensitively(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    get_logger().info("x", First_Name=SECRET, PHONE="323-555-0199")
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "323-555-0199" not in err


def test_context_variables_are_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO", service="intake")
    structlog.contextvars.bind_contextvars(date_of_birth="2010-04-01")
    get_logger().info("x")
    err = capsys.readouterr().err
    assert "2010-04-01" not in err
    (line,) = _lines(err)
    assert line["service"] == "intake"


def test_bound_values_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    get_logger().bind(notes="prefers texts at 323-555-0199").info("x")
    assert "323-555-0199" not in capsys.readouterr().err


def test_other_values_pass_through(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    get_logger().info("routing.decided", referral_id="r-1", outcome="assigned", score=7.5)
    (line,) = _lines(capsys.readouterr().err)
    assert line["referral_id"] == "r-1"
    assert line["outcome"] == "assigned"
    assert line["score"] == 7.5
    assert line["level"] == "info"
    assert "timestamp" in line


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "WARNING")
    log = get_logger()
    log.info("quiet")
    log.warning("loud")
    assert [line["event"] for line in _lines(capsys.readouterr().err)] == ["loud"]


def test_unknown_level_falls_back_to_info(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "chatty")
    log = get_logger()
    log.debug("hidden")
    log.info("shown")
    assert [line["event"] for line in _lines(capsys.readouterr().err)] == ["shown"]


def test_redact_processor_directly() -> None:
    out = _redact(None, "info", {"event": "x", "first_name": SECRET, "zip": "90011", "region": "south_la"})
    assert out == {"event": "x", "first_name": "[redacted]", "zip": "[redacted]", "region": "south_la"}


def test_nested_pii_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    get_logger().info("x", referral={"id": "r-1", "first_name": SECRET})
    assert SECRET not in capsys.readouterr().err


def test_stdlib_records_share_the_format_and_the_redaction(capsys: pytest.CaptureFixture[str]) -> None:
    """Libraries log through stdlib: their lines are JSON like ours, with the request context bound,
    redacted, and below WARNING dropped."""
    configure_logging("json", "DEBUG", service="intake")
    structlog.contextvars.bind_contextvars(request_id="req-7", first_name=SECRET)
    logging.getLogger("uvicorn.error").info("a library's chatter")
    logging.getLogger("uvicorn.error").warning("worker %s restarted", 3)
    get_logger("refnet.test").info("ours")
    lines = _lines(capsys.readouterr().err)
    assert SECRET not in json.dumps(lines)
    assert [(line["event"], line["level"]) for line in lines] == [
        ("worker 3 restarted", "warning"),
        ("ours", "info"),
    ]
    library = lines[0]
    assert (library["logger"], library["request_id"], library["service"]) == (
        "uvicorn.error",
        "req-7",
        "intake",
    )
    assert library["first_name"] == "[redacted]" and "timestamp" in library


def test_configuring_twice_leaves_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    configure_logging("console", "INFO")
    logging.getLogger("nats").error("once")
    err = capsys.readouterr().err
    assert err.count("once") == 1 and not err.lstrip().startswith("{")


def test_control_characters_are_escaped_in_console_output(capsys: pytest.CaptureFixture[str]) -> None:
    """A request path can carry ESC, CR/LF and bidi overrides: in the console log they are shown escaped, so
    nobody can forge a log line, clear or recolour the operator's terminal, or reorder what it shows."""
    configure_logging("console", "DEBUG")
    hostile = "/v1/referrals/\x1b[2J\x1b[31mok\r\n2026-01-01 [info] login.succeeded user=admin\u202e\x07"
    get_logger("test").info("request.done", path=hostile, query="\x1b[31m", method="GET")
    logging.getLogger("uvicorn.error").warning("bad path %s", hostile)  # a library's record too
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2, lines
    for raw in ("\x1b", "\r", "\x07", "\u202e"):
        assert raw not in err
    assert "path='/v1/referrals/\\x1b[2J\\x1b[31mok\\r\\n2026" in lines[0] and "\\u202e" in lines[0]
    assert "query='\\x1b[31m'" in lines[0] and "method=GET" in lines[0]
    assert "\\x1b[31m" in lines[1]


def test_exception_tracebacks_keep_their_lines_in_console_output(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("console", "DEBUG")
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("test").exception("job.failed")
    assert "Traceback (most recent call last):\n" in capsys.readouterr().err
