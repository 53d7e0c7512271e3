"""intake's layout holds: SQL only in each domain's sql/ folder (every file used by its own domain), no
import of another service, and no handler that authenticates or opens a transaction by hand."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INTAKE = ROOT / "services" / "intake"
DOMAINS = sorted(p.parent for p in INTAKE.glob("*/sql"))
# A string that starts like a statement.
_STATEMENT = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|SET|LISTEN|NOTIFY|TRUNCATE)\b"
)


def _python(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _strings(path: Path) -> list[tuple[int, str]]:
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_every_domain_has_its_sql() -> None:
    names = {p.name for p in DOMAINS}
    assert {"core", "referrals", "cases", "notifications", "partners", "staff", "admin", "web"} <= names


def test_no_sql_statement_is_inline() -> None:
    inline = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip()[:60]!r}"
        for path in _python(INTAKE)
        for line, text in _strings(path)
        if _STATEMENT.match(text)
    ]
    assert inline == []


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda p: p.name)
def test_every_sql_file_is_read_by_its_domain(domain: Path) -> None:
    names = {text for path in _python(domain) for _, text in _strings(path)}
    package = "services.intake." + domain.name
    readers = "\n".join(path.read_text() for path in _python(domain))
    unused = sorted(p.stem for p in (domain / "sql").glob("*.sql") if p.stem not in names)
    assert unused == []
    # Each domain names only its own package when it loads SQL.
    foreign = set(re.findall(r'_PKG = "([^"]+)"', readers)) | set(re.findall(r'load_sql\("([^"]+)"', readers))
    assert foreign <= {package}


def test_intake_imports_no_other_service() -> None:
    offending = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _python(INTAKE)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
        if name.startswith("services.") and not name.startswith("services.intake")
    ]
    assert offending == []


def test_handlers_take_the_caller_and_the_transaction_as_dependencies() -> None:
    """Handlers neither authenticate nor open a transaction under the caller themselves: the `caller`,
    `conn` and `db` dependencies do (services/intake/core/dependencies.py)."""
    handlers = [p for p in _python(INTAKE) if p.name == "controller.py" or p.name.endswith("_pages.py")]
    assert len(handlers) >= 9
    by_hand = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _python(INTAKE)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if ("resolve_caller(" in line and path.parent.name != "core")
        or (path in handlers and re.search(r"\btransaction\(", line))
    ]
    assert by_hand == []
