"""Email channel: short messages with a link into refnet (never a youth's details), sent over SMTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from zoneinfo import ZoneInfo

import aiosmtplib

from services.notify.retry import AttemptResult
from shared.config import Settings

__all__ = ["EMAIL_KINDS", "render", "send", "total_timeout"]

_LA = ZoneInfo("America/Los_Angeles")
_FOOTER = (
    "\n\nFor the young person's privacy this email carries no details about them; "
    "sign in to refnet to see the case.\n-- refnet"
)

# kind -> (subject, opening text, path in the web app). The text is fixed: what varies is only
# a deadline or due date and an opaque referral or endpoint id, never anything about the youth.
_TEMPLATES: dict[str, tuple[str, str, str]] = {
    "offer": ("New referral offer in refnet", "A new referral has been offered to you.", "/app/inbox"),
    "offer_reminder": (
        "Reminder: a referral offer is waiting for your answer",
        "A referral offered to you is still waiting for your answer.",
        "/app/inbox",
    ),
    "unroutable": (
        "A referral is waiting in the supervisor queue",
        "A referral could not be routed automatically and is waiting in the supervisor queue.",
        "/app/queue",
    ),
    "followup_due": (
        "An outcome follow-up is due in refnet",
        "An outcome follow-up for one of your cases is due.",
        "/app/cases/",
    ),
    "consent_expiring": (
        "A youth's consent expires soon in refnet",
        "The consent for one of your cases expires soon. Renew it in refnet, or the young person's"
        " details will be destroyed when it expires.",
        "/app/cases/",
    ),
    "protocol_overdue": (
        "A child-protection step is overdue in refnet",
        "A child-protection protocol step for a case you hold or supervise has passed its due time.",
        "/app/cases/",
    ),
    "webhook_disabled": (
        "Your refnet webhook endpoint was disabled",
        "refnet stopped sending to one of your webhook endpoints after it kept failing.",
        "",
    ),
}
EMAIL_KINDS = frozenset(_TEMPLATES)


def _deadline(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value).astimezone(_LA)
    except ValueError:
        return None
    return when.strftime("%a %d %b, %I:%M %p %Z").replace(" 0", " ")


def _due_on(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value).strftime("%a %d %b %Y").replace(" 0", " ")
    except ValueError:
        return None


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def render(
    kind: str,
    payload: dict[str, Any],
    *,
    to: str,
    sender: str,
    base_url: str,
    message_id: str,
) -> EmailMessage:
    """Build the message from the template and the delivery's ids/deadline alone."""
    subject, opening, path = _TEMPLATES[kind]
    lines = [opening]
    deadline = _deadline(payload.get("respond_by"))
    if deadline:
        lines.append(f"Please respond by {deadline}.")
    if kind == "followup_due":
        due_on = _due_on(payload.get("due_on"))
        if due_on:
            lines.append(f"Due on {due_on}.")
        # The youth may have asked not to be contacted; the email does not say, refnet does.
        lines.append("Check the case's contact preference in refnet before reaching out to the young person.")
        referral_id = _uuid(payload.get("referral_id"))
        path = f"{path}{referral_id}" if referral_id else "/app/inbox"
    if kind == "consent_expiring":
        expires = _deadline(payload.get("expires_at"))
        if expires:
            lines.append(f"It expires {expires}.")
        referral_id = _uuid(payload.get("referral_id"))
        path = f"{path}{referral_id}" if referral_id else "/app/inbox"
    if kind == "protocol_overdue":
        # The step's code is a protocol term (e.g. advocate_response), never about the youth.
        step = str(payload.get("step", ""))
        if step.replace("_", "").isalnum():
            lines.append(f"Step: {step}.")
        due = _deadline(payload.get("due_at"))
        if due:
            lines.append(f"It was due {due}.")
        referral_id = _uuid(payload.get("referral_id"))
        path = f"{path}{referral_id}" if referral_id else "/app/inbox"
    if kind == "webhook_disabled":
        endpoint = str(payload.get("endpoint_id", ""))
        lines.append(f"Endpoint: {endpoint}")
        lines.append(
            "Deliveries that could not be made are kept. Once your receiver works again, re-enable "
            f"the endpoint with POST {base_url.rstrip('/')}/v1/webhooks/{endpoint}/enable."
        )
    else:
        lines.append(f"\nOpen refnet: {base_url.rstrip('/')}{path}")
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    # Stable across retries, so a mail system (or person) can spot a repeat.
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("\n".join(lines) + _FOOTER)
    return msg


def total_timeout(settings: Settings) -> float:
    return 3 * settings.smtp_timeout_seconds


async def send(message: EmailMessage, settings: Settings) -> AttemptResult:
    """Send over SMTP; never raises. 4xx replies and connection trouble retry, 5xx are permanent."""
    started = time.perf_counter()

    def ms() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    try:
        # aiosmtplib's timeout is per operation; bound the whole exchange too (the dispatcher's lease
        # on the delivery assumes it).
        async with asyncio.timeout(total_timeout(settings)):
            await aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                use_tls=settings.smtp_use_tls,
                start_tls=False if settings.smtp_use_tls else settings.smtp_starttls,
                username=settings.smtp_username or None,
                password=settings.smtp_password or None,
                timeout=settings.smtp_timeout_seconds,
            )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        code = max(codes) if codes else None
        return AttemptResult(
            ok=False,
            status=code,
            error=f"smtp_{code}",
            permanent=bool(codes) and min(codes) >= 500,
            latency_ms=ms(),
        )
    except aiosmtplib.SMTPResponseException as exc:
        return AttemptResult(
            ok=False, status=exc.code, error=f"smtp_{exc.code}", permanent=exc.code >= 500, latency_ms=ms()
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return AttemptResult(ok=False, error=type(exc).__name__, latency_ms=ms())
    return AttemptResult(ok=True, status=250, latency_ms=ms())
