"""Real receivers for notification tests: a scripted HTTP webhook server, an SMTP sink, and an independent
Standard Webhooks verifier (written from the specification, sharing no code with services/notify)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
from collections import defaultdict
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from refnet_dev.embedded import free_port

__all__ = ["Reply", "SmtpSink", "WebhookReceiver", "verify_standard_webhook"]


def verify_standard_webhook(
    secret: str, headers: dict[str, str], body: bytes, *, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """The receiver's side of https://www.standardwebhooks.com: true if any v1 signature matches."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance_s:
        return False
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_") :])
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for item in signatures.split(" "):
        version, _, sig = item.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    hang: bool = False  # never answer: the sender must time out


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class WebhookReceiver:
    """HTTP/1.1 on 127.0.0.1. Each path plays its script of replies in order, then ``default``."""

    default: Reply = field(default_factory=Reply)
    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    received: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> str:
        self.scripts[path] = list(replies)
        return self.url(path)

    async def start(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received[path].append(Received(path, headers, body, time.time()))
            script = self.scripts.get(path)
            reply = script.pop(0) if script else self.default
            if reply.hang:
                await reader.read()  # until the sender gives up and closes
                return
            extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers)
            writer.write(
                f"HTTP/1.1 {reply.status} X\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()


class _SmtpHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        if self.sink.reply.startswith("250"):
            self.sink.messages.append((list(envelope.rcpt_tos), msg, envelope.content))
        return self.sink.reply


class SmtpSink:
    """A real SMTP server (aiosmtpd, in its own thread) that keeps every message it accepts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[list[str], EmailMessage, bytes]] = []
        # What DATA is answered with: "451 ..." (try later) or "550 ..." (refused) to test failures.
        self.reply = "250 OK"
        self._controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpts, m, _ in self.messages if address in rcpts]
