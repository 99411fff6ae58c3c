"""FileRepo and SkillRepo on both databases: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import postgres_database
from wisegate.records.files import FileRecord, SkillRecord, SkillVersionRecord
from wisegate.storage.db import Database, migrate
from wisegate.storage.files import FileRepo, NameTaken, SkillRepo


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    with postgres_database() as url:
        yield url


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def file(n: int, workspace: str = "ws1", org: str = "org") -> FileRecord:
    file_id = f"file_{n:02d}"
    created = T0 + timedelta(seconds=n)
    return FileRecord(
        file_id,
        org,
        workspace,
        f"f{n}.txt",
        "text/plain",
        10 * n,
        False,
        f"{workspace}/{file_id}",
        created,
        None,
    )


def version(skill_id: str, v: str) -> SkillVersionRecord:
    return SkillVersionRecord(skill_id, v, "greeter", "Greets", "greeter", "Say hi.", "[]", 5, f"k/{v}", T0)


def test_file_repo(db_url: str) -> None:
    migrate(db_url)

    async def run() -> None:
        db = Database(db_url)
        repo = FileRepo(db)
        try:
            for n in range(1, 6):
                await repo.add(file(n))
            await repo.add(file(9, workspace="ws2"))
            assert await repo.used_bytes("org") == 10 * (1 + 2 + 3 + 4 + 5) + 90
            assert await repo.get("ws2", "file_01") is None
            page, more = await repo.page("ws1", 2)
            assert [f.id for f in page] == ["file_05", "file_04"] and more
            page, more = await repo.page("ws1", 2, after=(page[-1].created_at, page[-1].id))
            assert [f.id for f in page] == ["file_03", "file_02"] and more
            page, more = await repo.page("ws1", 2, before=(T0 + timedelta(seconds=2), "file_02"))
            assert [f.id for f in page] == ["file_04", "file_03"] and more
            page, _ = await repo.page("ws1", 10, ids=["file_01", "file_09"])
            assert [f.id for f in page] == ["file_01"]
            assert await repo.delete("ws2", "file_01") is None
            deleted = await repo.delete("ws1", "file_01")
            assert deleted is not None and deleted.created_at == T0 + timedelta(seconds=1)
        finally:
            await db.close()

    asyncio.run(run())


def test_skill_repo(db_url: str) -> None:
    migrate(db_url)

    async def run() -> None:
        db = Database(db_url)
        repo = SkillRepo(db)
        try:
            skill = SkillRecord("skill_1", "org", "ws1", "greeter", "Greeter", T0, T0, None)
            await repo.create(skill, version("skill_1", "1000"))
            with pytest.raises(NameTaken):
                await repo.create(
                    SkillRecord("skill_2", "org", "ws1", "greeter", "Again", T0, T0, None),
                    version("skill_2", "1"),
                )
            await repo.create(
                SkillRecord("skill_3", "org", "ws2", "greeter", "Other ws", T0, T0, None),
                version("skill_3", "1"),
            )
            await repo.add_version(version("skill_1", "2000"))
            got = await repo.get("ws1", "skill_1")
            assert got is not None and got.latest_version == "2000"
            assert await repo.get("ws2", "skill_1") is None
            versions, more = await repo.versions("skill_1", 1, None)
            assert [v.version for v in versions] == ["2000"] and more
            assert await repo.delete("ws1", "skill_1") is False
            await repo.delete_version("skill_1", "2000")
            await repo.delete_version("skill_1", "1000")
            assert await repo.delete("ws1", "skill_1") is True
            assert await repo.get("ws1", "skill_1") is None
        finally:
            await db.close()

    asyncio.run(run())
