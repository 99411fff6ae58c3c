"""``wisegate serve --workers 2``: two API processes on one port, as real processes, through the
official SDK and raw httpx, on SQLite and PostgreSQL with the rate-limit buckets in Redis.

Both workers answer; ``/metrics`` of either reports the server as one; each worker journals its
settlements in a directory of its own; the batch worker of each process runs a batch once; a worker
killed with ``kill -9`` is replaced and its journal replayed; SIGTERM drains every worker (20 streams
end with ``message_stop`` and are settled, exit status 0); the parent killed with ``kill -9`` takes
its workers with it, so the port is free for a restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anthropic
import httpx
import pytest
from sqlalchemy import text

from tests.api.test_health import samples, value
from tests.conftest import SCRIPTED_MODEL, make_key, postgres_database, settings_for
from tests.processes import ServerProcess, api_workers, connections, scripted_env
from tests.test_drain import STREAMS, open_streams
from wisegate.storage.db import Database, migrate

T = TypeVar("T")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield settings_for(tmp_path).resolved_database_url
        return
    with postgres_database() as url:
        yield url


def _start(
    tmp_path: Path, database_url: str, token_delay: float, **extra: object
) -> tuple[ServerProcess, str]:
    settings = settings_for(tmp_path, database_url=database_url)
    migrate(database_url)
    key = make_key(settings)
    env = scripted_env(
        tmp_path,
        backends={"scripted": {"type": "scripted", "options": {"token_delay": token_delay}}},
        database_url=database_url,
        redis_url="redis://127.0.0.1:6379/0",
        redis_prefix=f"wgworkers-{uuid.uuid4().hex[:10]}",
        log_level="INFO",
        **extra,
    )
    # Two interpreters import and start at once: on a busy machine that takes a while.
    return ServerProcess(env, key, tmp_path / "server.log", "--workers", "2", timeout=240), key


def _workers(server: ServerProcess) -> list[int]:
    return api_workers(server.proc.pid)


def _until(what: Callable[[], T], timeout: float, message: str) -> T:
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, message
        time.sleep(0.05)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _journals(data_dir: Path) -> list[Path]:
    root = data_dir / "ledger-journal"
    return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")] if root.exists() else []


async def _answers(base_url: str, key: str, tag: str, n: int) -> list[str]:
    """``n`` requests at once, each on a new connection (so the kernel may hand it to either worker);
    the request ids of the answers, each checked against its prompt."""

    async def one(i: int) -> str:
        prompt = f"{tag} {i} a b"
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            response = await client.post(
                "/v1/messages",
                headers={"x-api-key": key, "connection": "close"},
                json={
                    "model": SCRIPTED_MODEL,
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": prompt}],
                },
            )
        assert response.status_code == 200, response.text
        assert response.json()["content"][0]["text"] == prompt
        return str(response.headers["request-id"])

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def _usage_rows(database_url: str) -> Counter[str]:
    async def read() -> Counter[str]:
        db = Database(database_url)
        try:
            async with db.read() as session:
                return Counter(
                    (await session.execute(text("select request_id from usage_records"))).scalars()
                )
        finally:
            await db.close()

    return asyncio.run(read())


def test_two_workers_share_the_port_and_read_as_one_server(tmp_path: Path, database_url: str) -> None:
    server, key = _start(tmp_path, database_url, token_delay=0.01)
    answered: list[str] = []
    try:
        first = _until(lambda: len(_workers(server)) == 2 and _workers(server), 60, "two workers")
        # Both workers answer: each has settled into a journal directory of its own.
        for round_ in range(20):
            answered += asyncio.run(_answers(server.base_url, key, f"r{round_}", 12))
            if len(_journals(tmp_path)) == 2:
                break
        assert len(_journals(tmp_path)) == 2, "one worker answered everything"

        # The batch worker of each process: one result per custom_id.
        client = anthropic.Anthropic(base_url=server.base_url, api_key=key)
        batch = client.messages.batches.create(
            requests=[
                {
                    "custom_id": f"c{i}",
                    "params": {
                        "model": SCRIPTED_MODEL,
                        "max_tokens": 8,
                        "messages": [{"role": "user", "content": f"b{i} x"}],
                    },
                }
                for i in range(40)
            ]
        )
        _until(
            lambda: client.messages.batches.retrieve(batch.id).processing_status == "ended", 60, "batch ended"
        )
        results = Counter(
            r.custom_id for r in client.messages.batches.results(batch.id) if r.result.type == "succeeded"
        )
        assert results == Counter(f"c{i}" for i in range(40))

        # Any worker's /metrics counts every worker's requests (new connections, so both are asked).
        totals = set()
        for _ in range(8):
            seen = samples(server.base_url, connection="close")
            totals.add(
                (
                    value(
                        seen,
                        "wisegate_requests_total",
                        route="/v1/messages",
                        status="200",
                        model=SCRIPTED_MODEL,
                    ),
                    value(seen, "wisegate_batch_requests_done_total", result="succeeded"),
                )
            )
        assert totals == {(len(answered), 40)}

        # kill -9 of one worker: the parent starts another, which replays the dead one's journal.
        os.kill(first[0], signal.SIGKILL)
        replaced = _until(
            lambda: (w := _workers(server)) and len(w) == 2 and first[0] not in w and w, 30, "a replacement"
        )
        assert first[1] in replaced
        answered += asyncio.run(_answers(server.base_url, key, "after", 12))
        assert server.proc.poll() is None

        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(60)
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    assert code == 0, log[-3000:]
    assert f"API worker {first[0]} exited with signal SIGKILL" in log
    assert "Traceback" not in log
    assert not _workers(server) and not any(_alive(pid) for pid in replaced)
    assert _journals(tmp_path) == []  # the killed worker's replayed, the others' committed and removed
    rows = _usage_rows(database_url)
    assert {rid: rows[rid] for rid in answered} == dict.fromkeys(answered, 1)
    assert sum(1 for rid in rows if rid.startswith("msgbatch_")) == 40 and max(rows.values()) == 1


def test_sigterm_drains_every_worker_and_exits_0(tmp_path: Path) -> None:
    database_url = settings_for(tmp_path).resolved_database_url
    server, key = _start(tmp_path, database_url, token_delay=0.05, drain_grace_seconds=2.0)

    async def run() -> tuple[list[tuple[str, list[str]]], list[int], int, bool]:
        workers = _until(lambda: len(_workers(server)) == 2 and _workers(server), 60, "two workers")
        opened = asyncio.Event()
        streams = asyncio.create_task(open_streams(server.base_url, key, 80, opened))  # 80 words: ~4 s each
        await asyncio.wait_for(opened.wait(), 60)
        held = [connections(pid, server.port) for pid in workers]
        server.proc.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(base_url=server.base_url) as probe:
            ready = (await probe.get("/ready")).status_code  # the grace: still listening, not ready
        await asyncio.sleep(2.5)
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            refused = False
        except OSError:
            refused = True
        return await streams, held, ready, refused

    try:
        results, held, ready, refused = asyncio.run(run())
        code = server.proc.wait(60)
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    # Every stream was held by a worker. How a burst spreads over the workers is the kernel's choice (one
    # worker's accept loop may take all of it on a loaded machine), so that is not asserted here.
    assert sum(held) == STREAMS, held
    assert ready == 503 and refused
    assert [kinds[-1] for _, kinds in results] == ["message_stop"] * STREAMS
    assert all(kinds.count("content_block_delta") == 80 for _, kinds in results)
    assert code == 0, log[-3000:]
    rows = _usage_rows(database_url)
    assert {rid: rows[rid] for rid, _ in results} == {rid: 1 for rid, _ in results}
    assert log.count('"msg": "draining') == 2 and "Traceback" not in log


def test_the_parent_killed_takes_its_workers_along(tmp_path: Path) -> None:
    server, _ = _start(tmp_path, settings_for(tmp_path).resolved_database_url, token_delay=0.0)
    try:
        workers = _until(lambda: len(_workers(server)) == 2 and _workers(server), 60, "two workers")
        server.kill()
        _until(lambda: not any(_alive(pid) for pid in workers), 10, "workers outlived the parent")
    finally:
        server.stop()
    with socket.socket() as sock:  # free for the restart (which binds as this does, past TIME_WAIT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", server.port))
