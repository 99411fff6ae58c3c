"""Concurrent requests that miss the key cache share one database read (no stampede on expiry)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from wisegate.domain.keys import KeyService
from wisegate.records.tenancy import ApiKey
from wisegate.storage.db import Database, migrate
from wisegate.storage.repos import TenancyRepo


class CountingRepo(TenancyRepo):
    reads = 0

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        self.reads += 1
        await asyncio.sleep(0.01)  # a read that takes a moment, so the requests overlap
        return await super().key_by_hash(key_hash)


def test_concurrent_misses_share_one_read(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    migrate(url)

    async def run() -> None:
        db = Database(url)
        repo = CountingRepo(db)
        keys = KeyService(repo, cache_seconds=60)
        org = await keys.bootstrap()
        workspace = await keys.default_workspace(org.id)
        key, secret = await keys.create_key(workspace.id, "k")
        principals = await asyncio.gather(*(keys.authenticate(secret) for _ in range(32)))
        assert {p.key.id for p in principals} == {key.id}
        assert repo.reads == 1
        await db.close()

    asyncio.run(run())
