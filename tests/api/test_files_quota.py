"""The files storage quota holds under parallel uploads, on SQLite and PostgreSQL.

Quota 1 MB, 30 uploads of 200 KB at once through the official SDK: the quota is reserved before the
bytes are accepted, so exactly what fits (5) is stored and every other upload gets a clean 400
``storage_quota_exceeded``; the reservations of the refused uploads are given back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import StorageQuotaExceededError
from sqlalchemy import func, select

from tests.conftest import LiveServer, postgres_database, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend
from wisegate.storage.tables import FileReservationRow, FileRow

QUOTA = 1024 * 1024
SIZE = 200 * 1024
UPLOADS = 30


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    with postgres_database() if request.param == "postgres" else contextlib.nullcontext() as url:
        database = {"database_url": url} if url else {}
        settings = scripted_settings(tmp_path, files_quota_bytes=QUOTA, **database)
        yield from serve(settings, backends={"scripted": ScriptedBackend()})


def _stored(live: LiveServer) -> tuple[int, int, int]:
    """(files, their bytes, reservations left) in the database."""

    async def count() -> tuple[int, int, int]:
        async with live.services.db.read() as session:
            files, size = (
                await session.execute(select(func.count(), func.coalesce(func.sum(FileRow.size_bytes), 0)))
            ).one()
            held = (await session.execute(select(func.count()).select_from(FileReservationRow))).scalar_one()
        return int(files), int(size), int(held)

    result: tuple[int, int, int] = live.run(count())
    return result


def test_parallel_uploads_cannot_pass_the_quota(live: LiveServer) -> None:
    client = anthropic.AsyncAnthropic(base_url=live.base_url, api_key=live.key, max_retries=0)

    async def upload(i: int) -> Any:
        try:
            return await client.beta.files.upload(
                file=(f"f{i}.bin", bytes([i]) * SIZE, "application/octet-stream")
            )
        except anthropic.APIStatusError as exc:
            return exc

    async def race() -> list[Any]:
        return await asyncio.gather(*(upload(i) for i in range(UPLOADS)))

    outcomes = asyncio.run(race())
    stored = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(stored) == QUOTA // SIZE == 5
    for error in refused:
        assert isinstance(error, StorageQuotaExceededError), repr(error)
        assert error.status_code == 400 and error.error_code == "storage_quota_exceeded"
        assert f"quota of {QUOTA} bytes" in error.message
    assert _stored(live) == (5, 5 * SIZE, 0)  # refused uploads gave their reservations back

    # Room freed by a delete is usable again at once; the quota still holds past it.
    sync = live.client()
    sync.beta.files.delete(stored[0].id)
    again = sync.beta.files.upload(file=("again.bin", b"a" * SIZE, "application/octet-stream"))
    assert again.size_bytes == SIZE
    with pytest.raises(StorageQuotaExceededError):
        sync.beta.files.upload(file=("over.bin", b"o" * SIZE, "application/octet-stream"))
    assert _stored(live) == (5, 5 * SIZE, 0)
