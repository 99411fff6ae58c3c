"""``wisegate worker`` drains on SIGTERM: it stops claiming, the requests it claimed run to completion
(or, on a second signal, go back to the queue at once), and it exits 0. A real worker process on
SQLite and PostgreSQL; the batch is submitted through a server that runs no batch worker itself."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import SCRIPTED_MODEL, LiveServer, postgres_database, scripted_settings, serve
from tests.processes import scripted_env
from wisegate.backends.scripted import ScriptedBackend

N = 12
CONCURRENCY = 4


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    if request.param == "sqlite":
        yield from serve(
            scripted_settings(tmp_path, batch_worker=False), backends={"scripted": ScriptedBackend()}
        )
        return
    with postgres_database() as url:
        settings = scripted_settings(tmp_path, batch_worker=False, database_url=url)
        yield from serve(settings, backends={"scripted": ScriptedBackend()})


def _worker(server: LiveServer, tmp_path: Path, delay: float, name: str) -> subprocess.Popen[bytes]:
    env = scripted_env(
        tmp_path,
        backends={"scripted": {"type": "scripted", "options": {"delay": delay}}},
        database_url=server.settings.resolved_database_url,
        batch_concurrency=str(CONCURRENCY),
        log_level="INFO",
    )
    with (tmp_path / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "wisegate", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )


def _states(server: LiveServer, batch_id: str) -> Counter[str]:
    """Each request's state: its status, and ``claimed`` for a queued one a worker holds (read in the
    server's own loop and database, not a new engine per poll)."""

    async def read() -> Counter[str]:
        async with server.services.db.read() as session:
            rows = await session.execute(
                text("select status, claimed_by from batch_requests where batch_id = :b"), {"b": batch_id}
            )
            return Counter("claimed" if s == "queued" and c else s for s, c in rows)

    result: Counter[str] = server.run(read())
    return result


def _until_claimed(server: LiveServer, batch_id: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while _states(server, batch_id)["claimed"] < CONCURRENCY:
        assert proc.poll() is None and time.monotonic() < deadline, "the worker never claimed"
        time.sleep(0.05)


def _batch(server: LiveServer) -> str:
    batch = server.client().messages.batches.create(
        requests=[
            {
                "custom_id": f"c{i}",
                "params": {
                    "model": SCRIPTED_MODEL,
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": f"r{i}"}],
                },
            }
            for i in range(N)
        ]
    )
    return batch.id


def test_sigterm_finishes_what_was_claimed_claims_nothing_more_and_exits_0(
    server: LiveServer, tmp_path: Path
) -> None:
    batch_id = _batch(server)
    proc = _worker(server, tmp_path, delay=1.5, name="worker")
    try:
        _until_claimed(server, batch_id, proc)
        proc.terminate()
        code = proc.wait(30)
    finally:
        proc.kill()
    log = (tmp_path / "worker.log").read_text()
    assert code == 0, log
    assert "draining: no new claims" in log and "Traceback" not in log
    # The four it held were finished; it took no other; nothing is left claimed by it.
    assert _states(server, batch_id) == Counter({"succeeded": CONCURRENCY, "queued": N - CONCURRENCY})


def test_a_second_sigterm_gives_the_claims_back_and_another_worker_finishes_the_batch(
    server: LiveServer, tmp_path: Path
) -> None:
    batch_id = _batch(server)
    proc = _worker(server, tmp_path, delay=60, name="slow")
    try:
        _until_claimed(server, batch_id, proc)
        proc.terminate()
        time.sleep(0.3)
        assert proc.poll() is None  # draining: waiting for the 60 s requests
        started = time.monotonic()
        proc.terminate()
        code = proc.wait(30)
        assert time.monotonic() - started < 10
    finally:
        proc.kill()
    assert code == 0, (tmp_path / "slow.log").read_text()
    assert _states(server, batch_id) == Counter({"queued": N})  # given back at once, not left to the lease

    fast = _worker(server, tmp_path, delay=0, name="fast")
    try:
        deadline = time.monotonic() + 60
        while _states(server, batch_id) != Counter({"succeeded": N}):
            assert time.monotonic() < deadline, _states(server, batch_id)
            time.sleep(0.1)
        fast.terminate()
        assert fast.wait(30) == 0
    finally:
        fast.kill()
    results = Counter(r.custom_id for r in server.client().messages.batches.results(batch_id))
    assert results == Counter(f"c{i}" for i in range(N))

    async def usage() -> Counter[str]:
        async with server.services.db.read() as session:
            rows = await session.execute(
                text("select request_id from usage_records where request_id like :p"), {"p": f"{batch_id}:%"}
            )
            return Counter(rows.scalars())

    assert server.run(usage()) == Counter(f"{batch_id}:{i}" for i in range(N))  # billed once each
