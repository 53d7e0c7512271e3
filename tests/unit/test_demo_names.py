"""Demo people keep the accents of their names on screen; their email addresses are plain ASCII."""

from __future__ import annotations

import pytest

from refnet_dev.demo import _CASE_MANAGERS, PARTNERS, _email, ascii_fold


@pytest.mark.parametrize(
    ("name", "email"),
    [
        ("Lucia Gómez", "lucia.gomez@demo.refnet.local"),
        ("Sofía Morales", "sofia.morales@demo.refnet.local"),
        ("Begoña Núñez-Ibáñez", "begona.nunez.ibanez@demo.refnet.local"),
        ("Jin Park", "jin.park@demo.refnet.local"),
        ("St. Vincent Emergency Department", "st.vincent.emergency.department@demo.refnet.local"),
    ],
)
def test_emails_transliterate_accented_letters(name: str, email: str) -> None:
    assert _email(name) == email


def test_fold_drops_only_the_accents() -> None:
    assert ascii_fold("Lucía Gómez, São Tomé, Ærø") == "Lucia Gomez, Sao Tome, r"  # Æ/ø have no ASCII form
    assert ascii_fold("plain") == "plain"


def test_every_demo_address_is_ascii_and_distinct() -> None:
    names = [n for n, *_ in _CASE_MANAGERS] + [n for n, _ in PARTNERS]
    emails = [_email(n) for n in names]
    assert all(e.isascii() for e in emails)
    assert len(set(emails)) == len(emails)
    # The display names keep their accents (they are what people see).
    assert any(not n.isascii() for n in names)
