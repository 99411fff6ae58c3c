"""Repositories on both databases: SQLite (default) and PostgreSQL (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from tests.conftest import postgres_database
from wisegate.domain.keys import KeyService, hash_key
from wisegate.records.usage import UsageRecord
from wisegate.storage.db import MIGRATIONS, Database, migrate
from wisegate.storage.repos import TenancyRepo, UsageRepo


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    with postgres_database() as url:
        yield url


def test_migrations_reach_head_and_are_idempotent(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)

    async def version() -> str:
        db = Database(database_url)
        async with db.read() as session:
            value = (await session.execute(text("select version_num from alembic_version"))).scalar_one()
        await db.close()
        return str(value)

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert asyncio.run(version()) == head


def test_keys_are_stored_hashed_and_verified(database_url: str) -> None:
    migrate(database_url)

    async def run() -> None:
        db = Database(database_url)
        keys = KeyService(TenancyRepo(db), cache_seconds=0)
        org = await keys.bootstrap()
        assert (await keys.bootstrap()).id == org.id
        workspace = await keys.default_workspace(org.id)
        key, secret = await keys.create_key(workspace.id, "k1")
        assert secret.startswith("sk-wg-api01-") and len(secret) >= len("sk-wg-api01-") + 43
        principal = await keys.authenticate(secret)
        assert principal.key.id == key.id and principal.workspace_id == workspace.id
        async with db.read() as session:
            stored = (await session.execute(text("select key_hash from api_keys"))).scalars().all()
        assert stored == [hash_key(secret)] and secret not in str(stored)
        await keys.set_status(key.id, "inactive")
        with pytest.raises(Exception, match="inactive"):
            await keys.authenticate(secret)
        await db.close()

    asyncio.run(run())


def test_usage_records_round_trip(database_url: str) -> None:
    migrate(database_url)

    async def run() -> None:
        db = Database(database_url)
        repo = UsageRepo(db)
        now = datetime.now(UTC)
        record = UsageRecord(
            "req_1",
            "org",
            "wrkspc_1",
            "apikey_1",
            "m",
            10,
            5,
            1,
            2,
            "standard",
            "end_turn",
            None,
            True,
            12,
            now,
        )
        await repo.add(record)
        got = await repo.for_request("req_1")
        assert got is not None
        assert got.created_at.replace(microsecond=0) == now.replace(microsecond=0)
        assert (got.input_tokens, got.output_tokens, got.streamed, got.stop_reason) == (
            10,
            5,
            True,
            "end_turn",
        )
        assert [r.request_id for r in await repo.list_recent("wrkspc_1")] == ["req_1"]
        await db.close()

    asyncio.run(run())


def test_concurrent_writes_on_one_database(database_url: str) -> None:
    migrate(database_url)

    async def run() -> None:
        db = Database(database_url)
        repo = UsageRepo(db)
        now = datetime.now(UTC)
        await asyncio.gather(
            *(
                repo.add(
                    UsageRecord(
                        f"req_{i}", "o", "w", "k", "m", i, i, 0, 0, "standard", None, None, False, 1, now
                    )
                )
                for i in range(50)
            )
        )
        assert len(await repo.list_recent(limit=100)) == 50
        await db.close()

    asyncio.run(run())
