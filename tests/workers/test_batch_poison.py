"""A batch request that kills its worker ends ``errored`` after ``batch_max_crashes``; the rest completes.

A real ``wisegate serve`` (with its in-process batch worker) on SQLite and on PostgreSQL, the scripted
backend told to SIGKILL the process when it reads ``POISON`` — the way a backend crashing inside
native code takes the process down. The test restarts the server each time it dies, as a supervisor
would. The first crash happens while other requests of the batch are in flight; they are re-run alone
and succeed, and only the poisoned request is blamed for the next crash.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
from sqlalchemy import text

from tests.conftest import SCRIPTED_MODEL, make_key, postgres_database, settings_for
from tests.processes import ServerProcess, scripted_env
from wisegate.storage.db import Database, migrate

MAX_CRASHES = 2


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'poison.db'}"
        return
    with postgres_database() as url:
        yield url


def _rows(database_url: str, batch_id: str) -> dict[str, tuple[int, int]]:
    """``custom_id -> (attempts, crashes)`` as stored."""

    async def read() -> dict[str, tuple[int, int]]:
        db = Database(database_url)
        try:
            async with db.read() as session:
                rows = await session.execute(
                    text("select custom_id, attempts, crashes from batch_requests where batch_id = :b"),
                    {"b": batch_id},
                )
                return {row[0]: (row[1], row[2]) for row in rows}
        finally:
            await db.close()

    return asyncio.run(read())


def test_a_poisoned_request_ends_errored_and_the_rest_completes(database_url: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=database_url)
    migrate(settings.resolved_database_url)
    key = make_key(settings)
    env = scripted_env(
        tmp_path,
        database_url=database_url,
        backends={
            "scripted": {
                "type": "scripted",
                "options": {"delay": 0.2, "token_delay": 0.1, "crash_on": "POISON"},
            }
        },
        batch_lease_seconds=1,
        batch_max_crashes=MAX_CRASHES,
        batch_concurrency=8,
    )
    log = tmp_path / "server.log"
    server = ServerProcess(env, key, log)
    restarts = 0
    try:
        client = anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
        texts = {f"ok-{i}": f"answer number {i} in six words" for i in range(5)}
        texts["poisoned"] = "POISON pill"
        batch = client.messages.batches.create(
            requests=[
                {
                    "custom_id": custom_id,
                    "params": {
                        "model": SCRIPTED_MODEL,
                        "max_tokens": 16,
                        "messages": [{"role": "user", "content": body}],
                    },
                }
                for custom_id, body in texts.items()
            ]
        )
        deadline = time.monotonic() + 180
        while True:
            assert time.monotonic() < deadline, "the batch did not end"
            if server.proc.poll() is not None:  # killed by the poisoned request: restart, as systemd would
                server.kill()
                restarts += 1
                assert restarts <= MAX_CRASHES + 1, "the poisoned request kept killing the server"
                server = ServerProcess(env, key, log)
                client = anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
                continue
            try:
                current = client.messages.batches.retrieve(batch.id)
            except anthropic.APIConnectionError:
                time.sleep(0.05)
                continue
            if current.processing_status == "ended":
                break
            time.sleep(0.1)
        results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    finally:
        server.stop()

    assert restarts == MAX_CRASHES
    assert current.request_counts.succeeded == 5 and current.request_counts.errored == 1
    poisoned = results["poisoned"]
    assert poisoned.type == "errored"
    assert poisoned.error.error.type == "api_error"  # type: ignore[union-attr]
    assert f"stopped {MAX_CRASHES} times" in poisoned.error.error.message  # type: ignore[union-attr]
    for i in range(5):
        result = results[f"ok-{i}"]
        assert result.type == "succeeded"
        assert result.message.content[0].text == texts[f"ok-{i}"]  # type: ignore[union-attr]
    rows = _rows(database_url, batch.id)
    assert rows["poisoned"] == (MAX_CRASHES + 1, MAX_CRASHES)  # ran twice, then errored without running
    # Requests in flight at the first crash were suspects once; re-run alone, they were not blamed again.
    assert any(rows[f"ok-{i}"][1] == 1 for i in range(5)), "the first crash interrupted nothing else"
    assert all(rows[f"ok-{i}"][1] <= 1 for i in range(5))
