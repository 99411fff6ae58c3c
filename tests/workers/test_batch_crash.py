"""Crash safety: ``kill -9`` of the server and of a worker mid-batch loses and duplicates nothing.

Real processes (``wisegate serve`` with its in-process worker, and ``wisegate worker``) on a real
database, the scripted backend slowed down through the TOML config so the batch is still running when
the processes are killed. Afterwards (once the killed processes' ledger journals are replayed, as the
next start does) every custom_id has exactly one result and exactly one usage record, and some
requests were provably claimed more than once (the crash did interrupt work).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from sqlalchemy import text

from tests.conftest import free_port, postgres_database
from wisegate.storage.billing import BillingRepo
from wisegate.storage.db import Database
from wisegate.storage.ledger import LedgerJournal

WISEGATE = [sys.executable, "-m", "wisegate"]
N = 400


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
        return
    with postgres_database() as url:
        yield url


class Processes:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        log = (self.log_dir / f"{args[0]}-{len(self.running)}.log").open("w")
        proc = subprocess.Popen(
            WISEGATE + list(args), env=self.env, stdout=subprocess.PIPE, stderr=log, text=True
        )
        self.running.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _serve(procs: Processes, url: str) -> tuple[subprocess.Popen[str], str | None]:
    proc = procs.start("serve")
    assert proc.stdout is not None
    first = proc.stdout.readline()
    key = re.search(r"(sk-wg-api01-\S+)", first)
    deadline = time.monotonic() + 60
    while True:
        try:
            anthropic.Anthropic(base_url=url, api_key="x", max_retries=0).models.list()
        except anthropic.AuthenticationError:
            break
        except anthropic.APIConnectionError:
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.1)
    return proc, key.group(1) if key else None


def _wait_for(client: anthropic.Anthropic, batch_id: str, finished: int) -> Any:
    deadline = time.monotonic() + 120
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        counts = batch.request_counts
        if counts.succeeded + counts.errored >= finished or batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.05)


def _tree(pid: int) -> list[int]:
    """The process and its descendants (a server or worker may run its work in child processes)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _kill_mid_request(
    procs: Processes, database_url: str, batch_id: str, *victims: subprocess.Popen[str]
) -> None:
    """SIGKILL the processes while they hold claimed, unfinished requests of the batch. Every process is
    frozen (SIGSTOP, with its children) while the database is read, so the requests seen claimed by a
    victim (its pid is in the claim's worker name) cannot finish before the kill: with 50 ms requests,
    a loaded machine let them all finish between the read and the kill, and the test then proved
    nothing. Thawed and tried again when no victim held one."""

    async def holders() -> list[int]:
        db = Database(database_url)
        try:
            async with db.read() as session:
                query = text(
                    "select claimed_by from batch_requests where batch_id = :b "
                    "and claimed_by is not null and result is null"
                )
                return [
                    int(name.split(":")[-2])
                    for name in (await session.execute(query, {"b": batch_id})).scalars()
                ]
        finally:
            await db.close()

    deadline = time.monotonic() + 30
    while True:
        frozen = [pid for proc in procs.running if proc.poll() is None for pid in _tree(proc.pid)]
        _signal(frozen, signal.SIGSTOP)
        try:
            if set(held := asyncio.run(holders())) & {pid for v in victims for pid in _tree(v.pid)}:
                for proc in victims:
                    procs.kill(proc)
                return
        finally:
            _signal(frozen, signal.SIGCONT)
        assert time.monotonic() < deadline, f"no request of the batch was claimed by the victims: {held}"
        time.sleep(0.01)


def test_kill_9_mid_batch_loses_and_duplicates_nothing(database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "wisegate.toml"
    config.write_text(
        '[backends.scripted]\ntype = "scripted"\noptions = { delay = 0.05 }\n\n'
        '[[models]]\nid = "scripted-1"\nbackend = "scripted"\n'
    )
    port = free_port()
    env = {
        **os.environ,
        "WISEGATE_CONFIG": str(config),
        "WISEGATE_DATABASE_URL": database_url,
        "WISEGATE_DATA_DIR": str(tmp_path / "data"),
        "WISEGATE_PORT": str(port),
        "WISEGATE_BATCH_LEASE_SECONDS": "1",
        "WISEGATE_BATCH_CONCURRENCY": "8",
        "WISEGATE_LOG_LEVEL": "WARNING",
    }
    url = f"http://127.0.0.1:{port}"
    procs = Processes(env, tmp_path)
    scaled = database_url.startswith("postgresql")
    try:
        server, key = _serve(procs, url)
        assert key
        worker = procs.start("worker") if scaled else None
        client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
        requests = [
            {
                "custom_id": f"req-{i}",
                "params": {
                    "model": "scripted-1",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"answer {i}"}],
                },
            }
            for i in range(N)
        ]
        batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]

        _wait_for(client, batch.id, N // 4)
        _kill_mid_request(procs, database_url, batch.id, server, *([worker] if worker else []))
        server, _ = _serve(procs, url)
        worker = procs.start("worker") if scaled else None

        _wait_for(client, batch.id, N // 2)
        # Scaled, the server's own batch worker competes with the standalone one: whichever holds
        # requests is killed mid-request, and both start again.
        _kill_mid_request(procs, database_url, batch.id, server, *([worker] if worker else []))
        server, _ = _serve(procs, url)
        worker = procs.start("worker") if scaled else None

        ended = _wait_for(client, batch.id, N)
        deadline = time.monotonic() + 60
        while ended.processing_status != "ended":
            assert time.monotonic() < deadline
            time.sleep(0.1)
            ended = client.messages.batches.retrieve(batch.id)
        assert ended.request_counts.succeeded == N
        results = list(client.messages.batches.results(batch.id))
    finally:
        procs.stop_all()

    ids = [r.custom_id for r in results]
    assert len(ids) == N and set(ids) == {f"req-{i}" for i in range(N)}
    for r in results:
        assert r.result.type == "succeeded"
        assert r.result.message.content[0].text == f"answer {r.custom_id.removeprefix('req-')}"  # type: ignore[union-attr]

    async def check() -> tuple[int, int, int, int]:
        db = Database(database_url)
        try:
            # The last processes were killed too: their journaled settlements count once the data
            # directory is opened again, as the next start would.
            await BillingRepo(db, LedgerJournal(tmp_path / "data" / "ledger-journal")).recover()
            async with db.read() as session:
                records, distinct, failed = (
                    await session.execute(
                        text(
                            "select count(*), count(distinct request_id), "
                            "count(*) filter (where stop_reason is null) from usage_records "
                            "where request_id like :prefix"
                        ).bindparams(prefix=f"{batch.id}:%")
                    )
                ).one()
                retried = (
                    await session.execute(
                        text("select count(*) from batch_requests where batch_id = :b and attempts > 1"),
                        {"b": batch.id},
                    )
                ).scalar_one()
            return records, distinct, failed, retried
        finally:
            await db.close()

    records, distinct, failed, retried = asyncio.run(check())
    assert (records, distinct, failed) == (N, N, 0)
    assert retried > 0, "the kills interrupted no claimed request; the test proved nothing"
