"""Sign-in against the real database (issue 14, findings 6 and 7): argon2 runs in a worker thread, never on
the event loop; unknown emails, wrong passwords and deactivated accounts get the same refusal."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import asyncpg
import pytest

from services.intake.core.problems import Problem
from services.intake.staff import service
from services.intake.staff.throttle import SignInThrottle
from shared.credentials import hash_password, verify_password
from shared.db import create_pool

SECRET = "integration-test-secret-0123456789abcdef-long"


async def test_argon2_runs_off_the_event_loop_and_refusals_are_alike(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[bool] = []

    def recording_verify(stored: str | None, password: str) -> bool:
        threads.append(threading.current_thread() is threading.main_thread())
        return verify_password(stored, password)

    monkeypatch.setattr(service, "verify_password", recording_verify)
    conn = await asyncpg.connect(db_dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.role', 'system', true)")
            for email, gone in (("here@agency.test", False), ("gone@agency.test", True)):
                await conn.execute(
                    "INSERT INTO staff (id, email, role, password_hash, deactivated_at)"
                    " VALUES ($1, $2, 'evaluator', $3, CASE WHEN $4 THEN now() END)",
                    uuid.uuid4(),
                    email,
                    hash_password("correct horse battery"),
                    gone,
                )
    finally:
        await conn.close()
    pool = await create_pool(db_dsn)
    try:
        ok = await service.sign_in(pool, SECRET, 60, "here@agency.test", "correct horse battery")
        assert ok.access_token and ok.password_change_required is False
        answers: list[Any] = []
        for email, password in (
            ("here@agency.test", "wrong password"),
            ("nobody@agency.test", "correct horse battery"),
            ("gone@agency.test", "correct horse battery"),
        ):
            with pytest.raises(Problem) as refused:
                await service.sign_in(
                    pool, SECRET, 60, email, password, client="192.0.2.5", throttle=SignInThrottle()
                )
            answers.append((refused.value.status_code, refused.value.detail, refused.value.headers))
        assert answers[0] == answers[1] == answers[2]
        assert answers[0][0] == 401
    finally:
        await pool.close()
    assert threads and not any(threads), "argon2 ran on the event loop's thread"
