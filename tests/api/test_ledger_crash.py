"""kill -9 under load loses no ledger row: every request that got its whole answer was recorded.

The rule: the settlement is in the ledger journal before the response's last byte — for JSON the
body is sent after it, for SSE it is written before ``message_stop`` is sent — and the database
transaction follows in the background. So once the killed server's data directory is opened again
(the restart replays the journal), a client holding a complete answer (a parsed JSON body, or a
stream up to ``message_stop``) finds its request id in the ledger.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text

from tests.conftest import SCRIPTED_MODEL, make_key, settings_for
from tests.processes import ServerProcess, scripted_env
from wisegate.storage.db import Database, migrate

PRICES = {
    "scripted-*": {
        "input": "1",
        "output": "2",
        "cache_write_5m": "1.25",
        "cache_write_1h": "2",
        "cache_read": "0.1",
    }
}


async def _load(base_url: str, key: str, n: int, done: list[str], enough: asyncio.Event) -> None:
    """``n`` requests, 16 at a time, half streamed; ``done`` gets the request id of each complete answer."""
    gate = asyncio.Semaphore(16)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        words = " ".join(f"w{j}" for j in range(5 + i % 20))
        body = {"model": SCRIPTED_MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": words}]}
        async with gate:
            try:
                if i % 2:
                    body["stream"] = True
                    async with client.stream("POST", "/v1/messages", json=body) as response:
                        seen = ""
                        async for chunk in response.aiter_text():
                            seen += chunk
                        if response.status_code == 200 and "event: message_stop" in seen:
                            done.append(response.headers["request-id"])
                else:
                    response = await client.post("/v1/messages", json=body)
                    if response.status_code == 200 and response.json()["type"] == "message":
                        done.append(response.headers["request-id"])
            except (httpx.HTTPError, json.JSONDecodeError):
                return  # the server died under this request
            if len(done) >= n // 3:
                enough.set()

    async with httpx.AsyncClient(base_url=base_url, headers={"x-api-key": key}, timeout=60) as client:
        await asyncio.gather(*(one(client, i) for i in range(n)))


def _ledger(url: str) -> tuple[set[str], int, int, int]:
    async def read() -> tuple[set[str], int, int, int]:
        db = Database(url)
        async with db.read() as session:
            ids = set((await session.execute(text("select request_id from usage_records"))).scalars())
            cost = (
                await session.execute(text("select coalesce(sum(cost_picousd), 0) from usage_records"))
            ).scalar()
            spent = (
                await session.execute(text("select coalesce(sum(spent_pico), 0) from spend_periods"))
            ).scalar()
            held = (
                await session.execute(text("select coalesce(sum(reserved_pico), 0) from spend_periods"))
            ).scalar()
        await db.close()
        return ids, int(cost or 0), int(spent or 0), int(held or 0)

    return asyncio.run(read())


def _journal_lines(data: Path) -> int:
    """Settlement lines left in the killed process's journal (committed or not)."""
    return sum(len(f.read_bytes().splitlines()) for f in data.glob("**/ledger-journal/*/*.jsonl"))


def test_kill_9_under_load_loses_no_ledger_row(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    migrate(settings.resolved_database_url)
    key = make_key(settings)
    env = scripted_env(
        tmp_path,
        backends={"scripted": {"type": "scripted", "options": {"token_delay": 0.01}}},
        prices=PRICES,
        limits={"reservation_timeout_seconds": 2},
    )
    server = ServerProcess(env, key, tmp_path / "server.log")
    done: list[str] = []

    async def run() -> None:
        enough = asyncio.Event()
        load = asyncio.create_task(_load(server.base_url, key, 300, done, enough))
        await asyncio.wait_for(enough.wait(), 120)
        server.kill()
        await load

    try:
        asyncio.run(run())
    finally:
        server.stop()
    assert len(done) >= 100, len(done)
    journaled = _journal_lines(tmp_path)

    restarted = ServerProcess(env, key, tmp_path / "server.log")  # ready once the journal is replayed
    try:
        ids, cost, spent, held = _ledger(settings.resolved_database_url)
        print(f"served {len(done)}, ledger rows {len(ids)}, journaled at the kill {journaled}, held {held}")
        missing = set(done) - ids
        assert not missing, f"{len(missing)} served requests have no ledger row"
        # The debit and the row are one transaction: the counters agree with the ledger exactly...
        assert spent == cost * 2  # organization and workspace counters
        # ...and what the requests killed in flight still held is released by the sweep.
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while _ledger(settings.resolved_database_url)[3] and datetime.now(UTC) < deadline:
            asyncio.run(asyncio.sleep(0.5))
        assert _ledger(settings.resolved_database_url)[3] == 0
        response = httpx.post(
            restarted.base_url + "/v1/messages",
            headers={"x-api-key": key},
            json={
                "model": SCRIPTED_MODEL,
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "again"}],
            },
        )
        assert response.status_code == 200
    finally:
        restarted.stop()


def test_answers_while_the_database_cannot_be_written_are_billed_after_a_kill(tmp_path: Path) -> None:
    """With the database's write lock held elsewhere, requests are still answered (their settlements
    wait in the journal); the server is killed; the restart commits every one of them."""
    settings = settings_for(tmp_path)
    migrate(settings.resolved_database_url)
    key = make_key(settings)
    env = scripted_env(
        tmp_path, backends={"scripted": {"type": "scripted"}}, prices=PRICES, limits={"enabled": False}
    )
    server = ServerProcess(env, key, tmp_path / "server.log")
    body = {"model": SCRIPTED_MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "a b c"}]}
    served: list[str] = []
    blocker = sqlite3.connect(str(tmp_path / "wisegate.db"), isolation_level=None)
    try:
        warm = httpx.post(server.base_url + "/v1/messages", headers={"x-api-key": key}, json=body)
        assert warm.status_code == 200
        served.append(warm.headers["request-id"])
        time.sleep(0.5)  # its settlement commits
        blocker.execute("BEGIN IMMEDIATE")  # no other writer from here on
        with httpx.Client(base_url=server.base_url, headers={"x-api-key": key}, timeout=10) as client:
            for _ in range(20):
                response = client.post("/v1/messages", json=body)
                assert response.status_code == 200, response.text
                served.append(response.headers["request-id"])
        server.kill()
    finally:
        blocker.close()  # releases the lock (the transaction wrote nothing)
        server.stop()
    assert _journal_lines(tmp_path) >= 20  # the 20 answers were billed only in the journal
    assert len(_ledger(settings.resolved_database_url)[0]) == 1

    restarted = ServerProcess(env, key, tmp_path / "server.log")
    try:
        ids, cost, spent, _ = _ledger(settings.resolved_database_url)
        assert ids == set(served)
        assert cost > 0 and spent == cost * 2
        assert _journal_lines(tmp_path) == 0
    finally:
        restarted.stop()
