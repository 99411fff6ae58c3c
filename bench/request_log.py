"""How fast the request log answers over many usage records: find by request id, first and deep pages.

Writes N usage records (default 1,000,000) spread over 30 days into a fresh SQLite database (bulk
inserts, migrated first so the log's indexes exist), then times each query several times through
``RequestLogService.page`` — the code the console page, its CSV and ``/v1/organizations/request_log``
call (and the lookup by id also as the repository's query alone) — and prints the median and worst in
milliseconds.
Run: ``.venv/bin/python bench/request_log.py [--records 1000000] [--database URL]`` — with ``--database``
(SQLite or PostgreSQL) the records are written only when its usage table is empty, so a second run
reuses them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, text

from wisegate.domain.request_log import LogEntry, LogPage
from wisegate.domain.scope import Scope
from wisegate.services import Services
from wisegate.settings import Settings
from wisegate.storage.db import migrate
from wisegate.storage.request_log import LoggedRequest, LogQuery, RequestLogRepo
from wisegate.storage.tables import UsageRecordRow

MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5", "smollm2-135m-instruct"]
CHUNK = 20_000


def _row(i: int, start: datetime, step: timedelta) -> dict[str, object]:
    return {
        "request_id": f"req_bench{i:09d}",
        "organization_id": "org",
        "workspace_id": f"wrkspc_{i % 5}",
        "api_key_id": f"apikey_{i % 500}",
        "model": MODELS[i % len(MODELS)],
        "input_tokens": 1000 + i % 997,
        "output_tokens": 200 + i % 101,
        "cache_creation_input_tokens": i % 7,
        "cache_read_input_tokens": i % 13,
        "service_tier": "standard",
        "stop_reason": "end_turn",
        "error_type": "overloaded_error" if i % 97 == 0 else None,
        "streamed": i % 2 == 0,
        "latency_ms": 100 + i % 900,
        "created_at": start + step * i,
        "cost_picousd": 1000 * (i % 1000),
        "batch": i % 50 == 0,
    }


async def _as_page(found: Awaitable[list[LoggedRequest]]) -> LogPage:
    return LogPage([LogEntry(f.record, f.workspace_name, f.key_name, f.key_hint) for f in await found], None)


async def _time(name: str, run: Callable[[], Awaitable[LogPage]], rounds: int) -> None:
    took = []
    found = 0
    await run()  # warm: the first read of an index's pages is the disk's time, not the query's
    for _ in range(rounds):
        began = time.perf_counter()
        page = await run()
        took.append((time.perf_counter() - began) * 1000)
        found = len(page.entries)
    print(
        f"{name:<44} median {statistics.median(took):7.1f} ms   worst {max(took):7.1f} ms   ({found} rows)",
        flush=True,
    )


async def main(records: int, database: str | None, rounds: int) -> None:
    data = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=data, database_url=database)
    migrate(settings.resolved_database_url)
    services = Services.from_settings(settings)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(days=30) / records
    async with services.db.read() as session:
        present = (await session.execute(select(func.count()).select_from(UsageRecordRow))).scalar_one()
    if present == 0:
        began = time.perf_counter()
        for chunk in range(0, records, CHUNK):
            rows = [_row(i, start, step) for i in range(chunk, min(records, chunk + CHUNK))]
            async with services.db.write() as session:
                await session.execute(insert(UsageRecordRow), rows)
        print(f"wrote {records:,} records in {time.perf_counter() - began:.0f} s", flush=True)
    else:
        records = present
    if settings.resolved_database_url.startswith("sqlite"):
        async with services.db.write() as session:
            await session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    print(f"{records:,} records ({settings.resolved_database_url.split(':')[0]})", flush=True)
    log = services.request_log
    org = Scope("org", None)
    base = LogQuery("org", limit=50)
    middle = f"req_bench{records // 2:09d}"
    first = await log.page(org, base)
    deep = first
    for _ in range(100):
        if deep.next_page is None:
            break
        deep = await log.page(org, base, page=deep.next_page)
    cursor = deep.next_page
    repo = RequestLogRepo(services.db)
    await _time(
        "find by request id (the query alone)",
        lambda: _as_page(repo.page(replace(base, request_id=middle))),
        rounds,
    )
    await _time("find by request id (admin)", lambda: log.page(org, replace(base, request_id=middle)), rounds)
    await _time(
        "find by request id (one workspace's viewer)",
        lambda: log.page(org, replace(base, request_id=middle), workspaces=["wrkspc_0", "wrkspc_1"]),
        rounds,
    )
    await _time("first page, organization", lambda: log.page(org, base), rounds)
    await _time("page 101, organization (cursor)", lambda: log.page(org, base, page=cursor), rounds)
    await _time(
        "first page, one workspace",
        lambda: log.page(org, replace(base, workspace_ids=frozenset({"wrkspc_3"}))),
        rounds,
    )
    await _time("first page, one key", lambda: log.page(org, replace(base, api_key_id="apikey_7")), rounds)
    await _time("first page, errors only", lambda: log.page(org, replace(base, status="error")), rounds)
    await _time(
        "first page, one model, last 3 days",
        lambda: log.page(org, replace(base, model=MODELS[1], since=start + timedelta(days=27))),
        rounds,
    )
    await services.db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database", default=None, help="a database URL (default: a new SQLite file)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.records, args.database, args.rounds))
