"""The webhook and email channels against real local receivers: statuses, timeouts, the SSRF guard, SMTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from services.notify.channels import email as email_channel
from services.notify.channels import webhook as webhook_channel
from shared.config import load_settings
from shared.webhook_urls import Resolver
from tests.support.receivers import Reply, SmtpSink, WebhookReceiver

PII = ("Zyxwandra", "Quellmorrow", "323-555-0199", "90011", "2009-04-01", "housing", "mental_health")


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = await WebhookReceiver().start()
    yield r
    await r.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def _resolver(table: dict[str, str]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return [table.get(host, host)]

    return resolve


async def test_post_reports_status_and_retry_after(receiver: WebhookReceiver) -> None:
    ok = receiver.script("/ok", Reply(204))
    slow = receiver.script("/slow", Reply(429, (("Retry-After", "7"),)))
    async with webhook_channel.make_client("development", 5) as client:
        r1 = await webhook_channel.post(client, ok, b"{}", {"webhook-id": "msg_a"}, "development", 5)
        r2 = await webhook_channel.post(client, slow, b"{}", {}, "development", 5)
    assert (r1.ok, r1.status, r1.error) == (True, 204, None)
    assert r1.latency_ms > 0
    assert (r2.ok, r2.status, r2.error, r2.retry_after) == (False, 429, "http_429", 7.0)
    got = receiver.received["/ok"][0]
    assert got.headers["webhook-id"] == "msg_a"
    assert got.headers["user-agent"].startswith("refnet-webhooks/")


async def test_a_hanging_receiver_times_out(receiver: WebhookReceiver) -> None:
    url = receiver.script("/hang", Reply(hang=True))
    async with webhook_channel.make_client("development", 0.3) as client:
        result = await webhook_channel.post(client, url, b"{}", {}, "development", 0.3)
    assert not result.ok
    assert result.status is None
    assert result.error in {"Timeout", "ReadTimeout"}


async def test_redirects_are_not_followed(receiver: WebhookReceiver) -> None:
    url = receiver.script("/moved", Reply(302, (("Location", receiver.url("/elsewhere")),)))
    async with webhook_channel.make_client("development", 5) as client:
        result = await webhook_channel.post(client, url, b"{}", {}, "development", 5)
    assert (result.ok, result.status) == (False, 302)
    assert "/elsewhere" not in receiver.received


async def test_gone(receiver: WebhookReceiver) -> None:
    url = receiver.script("/gone", Reply(410))
    async with webhook_channel.make_client("development", 5) as client:
        result = await webhook_channel.post(client, url, b"{}", {}, "development", 5)
    assert result.gone


async def test_guard_checks_the_resolved_address_before_connecting(receiver: WebhookReceiver) -> None:
    """A public-looking name that resolves to loopback (DNS rebinding) is refused in production, and
    nothing reaches the receiver listening there; the same name is fine in development."""
    resolver = _resolver({"hooks.partner.test": "127.0.0.1"})
    url = f"https://hooks.partner.test:{receiver.port}/hook"
    async with webhook_channel.make_client("production", 5, resolver) as client:
        result = await webhook_channel.post(client, url, b"{}", {}, "production", 5)
    assert (result.ok, result.error, result.permanent) == (False, "ssrf_loopback", False)
    assert receiver.received == {}

    internal = _resolver({"hooks.partner.test": "10.9.8.7"})
    async with webhook_channel.make_client("development", 5, internal) as client:
        result = await webhook_channel.post(client, url.replace("https", "http"), b"{}", {}, "development", 5)
    assert result.error == "ssrf_private"

    plain = _resolver({"hooks.partner.test": "127.0.0.1"})
    async with webhook_channel.make_client("development", 5, plain) as client:
        result = await webhook_channel.post(client, url.replace("https", "http"), b"{}", {}, "development", 5)
    assert result.ok
    assert len(receiver.received["/hook"]) == 1


async def test_http_url_in_production_is_permanent() -> None:
    async with webhook_channel.make_client("production", 5) as client:
        result = await webhook_channel.post(client, "http://hooks.example.com/", b"{}", {}, "production", 5)
    assert (result.error, result.permanent) == ("ssrf_scheme", True)


@pytest.mark.parametrize("kind", sorted(email_channel.EMAIL_KINDS))
def test_emails_carry_a_link_and_nothing_about_the_youth(kind: str) -> None:
    payload = {"respond_by": "2026-11-20T22:30:00+00:00", "endpoint_id": "e-1"}
    msg = email_channel.render(
        kind,
        payload,
        to="cm@example.org",
        sender="refnet <n@x.test>",
        base_url="https://refnet.example/",
        message_id="<m@x>",
    )
    text = msg.get_content()
    assert "https://refnet.example/" in text
    for word in PII:
        assert word not in text
        assert word not in str(msg["Subject"])
    if kind.startswith("offer"):
        assert "2:30 PM PST" in text  # the deadline, in the agency's time zone


async def test_smtp_send_arrives_and_failures_are_classified(smtp: SmtpSink) -> None:
    settings = load_settings({}, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False)
    msg = email_channel.render(
        "offer", {}, to="cm@example.org", sender="refnet <n@x.test>", base_url="http://b", message_id="<m1@x>"
    )
    result = await email_channel.send(msg, settings)
    assert result.ok
    assert [m["Message-ID"] for m in smtp.to("cm@example.org")] == ["<m1@x>"]

    smtp.reply = "451 try again later"
    result = await email_channel.send(msg, settings)
    assert (result.ok, result.status, result.permanent) == (False, 451, False)
    smtp.reply = "550 no such mailbox"
    result = await email_channel.send(msg, settings)
    assert (result.ok, result.status, result.permanent) == (False, 550, True)

    closed = load_settings(
        {}, smtp_host="127.0.0.1", smtp_port=1, smtp_starttls=False, smtp_timeout_seconds=2
    )
    result = await email_channel.send(msg, closed)
    assert not result.ok
    assert not result.permanent


def test_the_protocol_overdue_email_names_the_step_and_deadline_only() -> None:
    rid = "6f1c2a9e-0000-4000-8000-000000000001"
    msg = email_channel.render(
        "protocol_overdue",
        {"referral_id": rid, "step": "advocate_response", "due_at": "2026-11-20T22:30:00+00:00"},
        to="cm@example.org",
        sender="refnet <n@x.test>",
        base_url="https://refnet.example/",
        message_id="<m@x>",
    )
    text = msg.get_content()
    assert "Step: advocate_response." in text and "2:30 PM PST" in text
    assert f"https://refnet.example/app/cases/{rid}" in text
    # A step code that is not a plain code is left out, not echoed.
    odd = email_channel.render(
        "protocol_overdue",
        {"referral_id": rid, "step": "<b>Jane</b>", "due_at": "x"},
        to="cm@example.org",
        sender="refnet <n@x.test>",
        base_url="https://refnet.example/",
        message_id="<m@x>",
    )
    assert "Jane" not in odd.get_content()
