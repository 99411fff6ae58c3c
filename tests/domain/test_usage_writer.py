"""The buffered usage writer: many records per transaction, nothing lost, flushed on read and close."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from wisegate.domain.usage import UsageService
from wisegate.storage.db import Database, migrate
from wisegate.storage.repos import UsageRecord, UsageRepo


def record(request_id: str) -> UsageRecord:
    return UsageRecord(
        request_id, "org", "wrkspc_1", "apikey_1", "m", 3, 4, 0, 0, "standard", "end_turn", None, False, 1,
        datetime.now(UTC),
    )  # fmt: skip


class CountingRepo(UsageRepo):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.batches: list[int] = []

    async def add_many(self, records: list[UsageRecord]) -> None:
        self.batches.append(len(records))
        await super().add_many(records)


def test_concurrent_records_are_batched_and_all_written(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'u.db'}"
    migrate(url)

    async def run() -> None:
        db = Database(url)
        repo = CountingRepo(db)
        usage = UsageService(repo)
        await asyncio.gather(*(usage.record(record(f"req_{i}")) for i in range(300)))
        assert len(await usage.recent(limit=1000)) == 300  # reads flush first
        assert sum(repo.batches) == 300 and len(repo.batches) < 300 / 10
        await usage.record(record("req_last"))
        await usage.close()  # shutdown writes what is queued
        assert await UsageRepo(db).for_request("req_last") is not None
        await db.close()

    asyncio.run(run())


def test_a_bad_row_does_not_lose_the_batch(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'u.db'}"
    migrate(url)

    async def run() -> None:
        db = Database(url)
        usage = UsageService(UsageRepo(db))
        await usage.record(record("req_dup"))
        await usage.flush()
        for request_id in ("req_a", "req_dup", "req_b"):  # req_dup violates the unique request id
            await usage.record(record(request_id))
        await usage.flush()
        ids = {r.request_id for r in await usage.recent()}
        assert ids == {"req_dup", "req_a", "req_b"}
        await usage.close()
        await db.close()

    asyncio.run(run())
