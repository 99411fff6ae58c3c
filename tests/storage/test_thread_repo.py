"""ThreadRepo on both databases: claims, hand-back, expiry and workspace deletion."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import postgres_database
from wisegate.records.threads import ThreadRecord
from wisegate.storage.db import Database, migrate
from wisegate.storage.threads import ThreadRepo

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    with postgres_database() as url:
        yield url


def record(message_id: str, workspace: str = "wrkspc_a", *, hours: float = 1) -> ThreadRecord:
    return ThreadRecord(
        message_id, "org", workspace, "m", '{"messages": []}', NOW, NOW + timedelta(hours=hours)
    )


def test_a_response_is_continued_once(db_url: str) -> None:
    async def run() -> None:
        migrate(db_url)
        db = Database(db_url)
        repo = ThreadRepo(db)
        try:
            await repo.add(record("msg_1"))
            stale = NOW - timedelta(minutes=15)
            first, second = await asyncio.gather(
                repo.claim("wrkspc_a", "msg_1", NOW, stale), repo.claim("wrkspc_a", "msg_1", NOW, stale)
            )
            assert sorted(map(type, (first, second)), key=str) == sorted([ThreadRecord, str], key=str)
            assert "in_flight" in (first, second)
            await repo.release("msg_1")
            claimed = await repo.claim("wrkspc_a", "msg_1", NOW, stale)
            assert isinstance(claimed, ThreadRecord) and claimed.state == '{"messages": []}'
            await repo.add(record("msg_2"), continues="msg_1")
            assert await repo.claim("wrkspc_a", "msg_1", NOW, stale) == "already_continued"
            assert await repo.claim("wrkspc_b", "msg_2", NOW, stale) == "not_found"
            # A claim whose request died is taken over once it is stale.
            assert isinstance(await repo.claim("wrkspc_a", "msg_2", NOW, stale), ThreadRecord)
            later = NOW + timedelta(minutes=20)
            assert await repo.claim("wrkspc_a", "msg_2", later, later - timedelta(hours=1)) == "in_flight"
            assert isinstance(
                await repo.claim("wrkspc_a", "msg_2", later, later - timedelta(minutes=15)), ThreadRecord
            )
        finally:
            await db.close()

    asyncio.run(run())


def test_expired_and_archived_state_is_gone(db_url: str) -> None:
    async def run() -> None:
        migrate(db_url)
        db = Database(db_url)
        repo = ThreadRepo(db)
        try:
            await repo.add(record("msg_old", hours=0.5))
            await repo.add(record("msg_new", hours=2))
            await repo.add(record("msg_other", "wrkspc_b", hours=3))
            stale = NOW
            at = NOW + timedelta(hours=1)
            assert await repo.claim("wrkspc_a", "msg_old", at, stale) == "not_found"
            assert await repo.delete_expired(at) == 1
            assert await repo.count("wrkspc_a") == 1
            assert await repo.delete_workspace("wrkspc_a") == 1
            assert await repo.count("wrkspc_a") == 0 and await repo.count("wrkspc_b") == 1
        finally:
            await db.close()

    asyncio.run(run())


def test_a_retention_lowered_since_applies_to_state_written_before(db_url: str) -> None:
    async def run() -> None:
        migrate(db_url)
        db = Database(db_url)
        repo = ThreadRepo(db)
        try:
            await repo.add(record("msg_old", hours=24 * 7))  # written at NOW under a week's retention
            await repo.add(record("msg_kept", hours=24 * 7))
            later = NOW + timedelta(minutes=5)
            stale = later - timedelta(minutes=15)
            # The retention is now one minute: state written five minutes ago is gone.
            lowered = later - timedelta(minutes=1)
            assert await repo.claim("wrkspc_a", "msg_old", later, stale, written_after=lowered) == "not_found"
            kept = await repo.claim(
                "wrkspc_a", "msg_kept", later, stale, written_after=later - timedelta(hours=1)
            )
            assert isinstance(kept, ThreadRecord)
            assert await repo.delete_expired(later, written_before=lowered) == 2
            assert await repo.count("wrkspc_a") == 0
        finally:
            await db.close()

    asyncio.run(run())
