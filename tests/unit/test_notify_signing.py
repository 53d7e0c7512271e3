"""Standard Webhooks signatures, checked against the specification's test vector and an independent verifier."""

from __future__ import annotations

import base64
import time

import pytest

from shared.crypto import KeyRing, generate_master_key
from shared.webhook_signing import new_secret, open_secret, seal_secret, sign, webhook_headers
from tests.support.receivers import verify_standard_webhook

# The vector published with the Standard Webhooks reference libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_matches_the_published_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    headers = webhook_headers([VECTOR_SECRET], VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    assert verify_standard_webhook(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS)


def test_secret_format() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:], validate=True)) == 32
    assert new_secret() != secret


def test_independent_verifier_accepts_ours_and_rejects_tampering() -> None:
    secret = new_secret()
    body = b'{"type":"referral.status_changed","data":{"referral_id":"r1","status":"assigned"}}'
    ts = int(time.time())
    headers = webhook_headers([secret], "msg_1", ts, body)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(ts)
    assert verify_standard_webhook(secret, headers, body)
    assert not verify_standard_webhook(secret, headers, body.replace(b"assigned", b"accepted"))
    assert not verify_standard_webhook(new_secret(), headers, body)
    assert not verify_standard_webhook(secret, {**headers, "webhook-id": "msg_2"}, body)
    # A replayed old message fails the timestamp tolerance.
    assert not verify_standard_webhook(secret, headers, body, now=ts + 3600)


def test_rotation_overlap_signs_with_both() -> None:
    old, new = new_secret(), new_secret()
    body = b"{}"
    headers = webhook_headers([new, old], "msg_x", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify_standard_webhook(new, headers, body)
    assert verify_standard_webhook(old, headers, body)


def test_sealed_secret_opens_only_for_its_endpoint() -> None:
    ring = KeyRing({"k1": generate_master_key()}, "k1")
    secret = new_secret()
    sealed = seal_secret(ring, "endpoint-a", secret)
    assert secret.encode() not in sealed
    assert open_secret(ring, "endpoint-a", sealed) == secret
    with pytest.raises(Exception):  # noqa: B017, PT011 - AESGCM raises InvalidTag
        open_secret(ring, "endpoint-b", sealed)
