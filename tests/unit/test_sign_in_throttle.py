"""Sign-in throttling (issue 14, finding 6): per email and address together, blind to whether the account
exists, so an attacker elsewhere cannot lock a person out; addresses are limited across emails too. And
the rate limiter's bucket keys (finding 7): identities we can vouch for, else the client address."""

from __future__ import annotations

import time

import jwt

from services.intake.core.ratelimit import bucket_key, remember_credential
from services.intake.staff.throttle import SignInThrottle


def test_five_failures_lock_only_that_email_at_that_address() -> None:
    t = SignInThrottle(per_pair=5, per_address=50)
    for _ in range(5):
        assert t.wait("ana@agency.org", "203.0.113.9", 0.0) == 0
        t.failed("ana@agency.org", "203.0.113.9", 0.0)
    assert t.wait("ana@agency.org", "203.0.113.9", 1.0) == 59
    assert t.wait("ANA@agency.org ", "203.0.113.9", 1.0) == 59  # the same account, however typed
    assert t.wait("ana@agency.org", "198.51.100.7", 1.0) == 0  # the person at their own desk
    assert t.wait("ben@agency.org", "203.0.113.9", 1.0) == 0


def test_back_off_doubles_up_to_fifteen_minutes_and_success_forgets() -> None:
    t = SignInThrottle(per_pair=5, per_address=1000)
    now = 0.0
    waits = []
    for _ in range(10):
        now += t.wait("a@b.c", "x", now)
        t.failed("a@b.c", "x", now)
        waits.append(t.wait("a@b.c", "x", now))
    assert waits[:4] == [0, 0, 0, 0]
    assert waits[4:] == [60, 120, 240, 480, 900, 900]
    t.succeeded("a@b.c", "x")
    assert t.wait("a@b.c", "x", now) == 0


def test_unknown_emails_count_like_known_ones_and_addresses_are_limited_across_emails() -> None:
    t = SignInThrottle(per_pair=5, per_address=20)
    for i in range(19):
        t.failed(f"user{i}@agency.org", "203.0.113.66", 0.0)
    assert t.wait("someone-else@agency.org", "203.0.113.66", 0.0) == 0
    t.failed("user19@agency.org", "203.0.113.66", 0.0)
    assert t.wait("someone-else@agency.org", "203.0.113.66", 0.0) == 60
    assert t.wait("someone-else@agency.org", "192.0.2.1", 0.0) == 0


def test_bucket_keys_name_identities_never_made_up_credentials() -> None:
    secret = "s3cret-for-the-test-0123456789abcdef-long-enough"
    now = int(time.time())
    token = jwt.encode(
        {"iss": "refnet", "sub": "staff-1", "iat": now, "exp": now + 60}, secret, algorithm="HS256"
    )
    assert bucket_key(f"Bearer {token}".encode(), "10.0.0.1", secret) == b"id|staff:staff-1"
    forged = jwt.encode(
        {"iss": "refnet", "sub": "staff-1", "iat": now, "exp": now + 60},
        "another-secret-0123456789abcdef-long-enough",
        algorithm="HS256",
    )
    assert bucket_key(f"Bearer {forged}".encode(), "10.0.0.1", secret) == b"addr|10.0.0.1"
    assert bucket_key(b"Bearer rnk_made-up-each-time", "10.0.0.1", secret) == b"addr|10.0.0.1"
    assert bucket_key(None, "10.0.0.2", secret) == b"addr|10.0.0.2"
    remember_credential("rnk_a-real-key", "partner:p-1")
    assert bucket_key(b"Bearer rnk_a-real-key", "10.0.0.1", secret) == b"id|partner:p-1"
