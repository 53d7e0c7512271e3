"""SQL lives in named .sql files of its own package: no statement inline in Python (shared, routing,
notify), every file used, and `load_sql` refuses to hand one package's SQL to another."""

from __future__ import annotations

import ast
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from shared.db import ForeignSqlError, load_sql

ROOT = Path(__file__).resolve().parents[2]
# Packages whose Python holds no SQL (intake's, refnet's and the tooling's are their owners' to move).
PACKAGES = {
    "shared": ROOT / "shared",
    "services.routing": ROOT / "services/routing",
    "services.notify": ROOT / "services/notify",
}
# A string that starts like a statement. COMMIT and ROLLBACK (transaction control in shared.db) are words
# of the protocol, not statements about data, and stay where the transaction is driven.
_STATEMENT = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|BEGIN|SET|LISTEN|NOTIFY|TRUNCATE)\b"
)


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _strings(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_sql_statement_is_inline_in_python(package: str) -> None:
    inline = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip()[:60]!r}"
        for path in _python_files(PACKAGES[package])
        for line, text in _strings(path)
        if _STATEMENT.match(text)
    ]
    assert inline == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_sql_file_is_used_by_its_package(package: str) -> None:
    root = PACKAGES[package]
    names = {text for path in _python_files(root) for _, text in _strings(path)}
    files = sorted(p.stem for p in (root / "sql").glob("*.sql"))
    assert files, f"{package} has no sql/ files"
    assert [f for f in files if f not in names] == []


def _read(package: str, file: str) -> str:
    return load_sql(package, file)


def _module(name: str) -> Callable[[str, str], str]:
    """`_read` as if written in module ``name`` (`load_sql` takes the caller from the frame's globals)."""
    namespace = {"__name__": name, "load_sql": load_sql}
    return cast(Callable[[str, str], str], types.FunctionType(_read.__code__, namespace, "read"))


def test_a_package_reads_its_own_sql() -> None:
    assert "FROM referrals" in _module("services.routing.engine")("services.routing", "lock_referral")
    assert "outbox" in _module("shared.outbox")("shared", "outbox_claim")
    # A subpackage reads its parent package's files (one service, one sql/ folder).
    assert _module("services.notify.channels.webhook")("services.notify", "wake_dispatchers")


@pytest.mark.parametrize(
    ("caller", "package", "name"),
    [
        ("services.intake.admin_routing", "services.routing", "queue"),
        ("services.intake.admin_metrics", "services.notify", "delivery_counts"),
        ("services.notify.worker", "services.routing", "lock_referral"),
        ("services.routing.worker", "shared", "claim_event"),
        ("shared.metrics", "services.notify", "delivery_counts"),
        ("refnet.operator", "services.notify", "sealed_secrets"),
        ("services.routingx", "services.routing", "queue"),
        ("services", "services.routing", "queue"),
    ],
)
def test_another_packages_sql_is_refused(caller: str, package: str, name: str) -> None:
    with pytest.raises(ForeignSqlError, match=re.escape(caller)):
        _module(caller)(package, name)


def test_the_package_must_be_named() -> None:
    with pytest.raises(ForeignSqlError):
        load_sql(None, "queue")
    with pytest.raises(ValueError, match="not an SQL file name"):
        load_sql("tests", "../../shared/sql/ping")
