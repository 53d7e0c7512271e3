"""The web app's message catalogue: English and Spanish have the same keys, and every key the pages
and templates use exists."""

from __future__ import annotations

import re
from pathlib import Path

from services.intake.web import i18n

WEB = Path(__file__).resolve().parents[2] / "services" / "intake" / "web"


def test_languages_have_the_same_keys() -> None:
    en, es = i18n.CATALOGUE["en"], i18n.CATALOGUE["es"]
    assert set(en) == set(es)
    # Placeholders match, so a Spanish message never lacks a value the English one shows.
    for key in en:
        assert set(re.findall(r"\{(\w+)\}", en[key])) == set(re.findall(r"\{(\w+)\}", es[key])), key


def test_every_key_used_exists() -> None:
    used: set[str] = set()
    for path in (WEB / "templates").glob("*.html"):
        used.update(re.findall(r"\bt\('([a-z_]+\.[a-z_]+)'", path.read_text()))
    pages = "\n".join(path.read_text() for path in WEB.glob("*.py"))
    used.update(re.findall(r'\bt\(lang, "([a-z_]+\.[a-z_]+)"', pages))
    used.update(re.findall(r'msg="([a-z_]+\.[a-z_]+)"', pages))
    used.update(
        k for k in re.findall(r'"((?:nav|error|login|csrf)\.[a-z_]+)"', pages) if not k.endswith(".html")
    )
    assert used
    missing = sorted(k for k in used if k not in i18n.CATALOGUE["en"])
    assert not missing, missing


def test_translate_and_fall_back() -> None:
    assert i18n.t("es", "login.title") == "Iniciar sesión"
    assert i18n.t("fr", "login.title") == "Sign in"
    assert i18n.t("en", "signed_in_as", name="Ana", role="x") == "Signed in as Ana (x)"
    assert i18n.code("es", "status", "accepted") == "aceptada"
    assert i18n.code("es", "need", "housing") == "vivienda"
    assert i18n.code("en", "need", "unknown_code") == "unknown code"
    assert i18n.code("en", "status", None) == ""


def test_negotiate() -> None:
    assert i18n.negotiate("es", "en-US") == "es"
    assert i18n.negotiate(None, "es-MX,es;q=0.9,en;q=0.8") == "es"
    assert i18n.negotiate("xx", "de-DE,fr;q=0.9") == "en"
    assert i18n.negotiate(None, None) == "en"
