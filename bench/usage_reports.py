"""How long the usage and cost reports take over many usage records (SQLite, read straight from records).

Writes N usage records spread over 7 days into a fresh SQLite database (one bulk insert), then times
``ReportService.usage`` (1d buckets, grouped by workspace and model) and ``ReportService.cost``
(grouped by description) over the whole week, through the same code the HTTP endpoints call.
Run: ``.venv/bin/python bench/usage_reports.py [--records 200000]``. Prints seconds per report and
records per second.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from wisegate.domain.pricing import PriceTable
from wisegate.domain.reports import ReportQuery, ReportService
from wisegate.domain.scope import Scope
from wisegate.settings import Settings
from wisegate.storage.db import Database, migrate
from wisegate.storage.reports import UsageReportRepo
from wisegate.storage.tables import UsageRecordRow

MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5", "smollm2-135m-instruct"]


async def main(records: int) -> None:
    url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    migrate(url)
    db = Database(url)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(days=7) / records
    rows = [
        {
            "request_id": f"req_{i}",
            "organization_id": "org",
            "workspace_id": f"wrkspc_{i % 5}",
            "api_key_id": f"apikey_{i % 50}",
            "model": MODELS[i % len(MODELS)],
            "input_tokens": 1000 + i % 997,
            "output_tokens": 200 + i % 101,
            "cache_creation_input_tokens": i % 7,
            "cache_read_input_tokens": i % 13,
            "service_tier": "batch" if i % 10 == 0 else "standard",
            "stop_reason": "end_turn",
            "error_type": None,
            "streamed": True,
            "latency_ms": 100,
            "created_at": start + step * i,
        }
        for i in range(records)
    ]
    async with db.write() as session:
        for chunk in range(0, records, 20_000):
            await session.execute(insert(UsageRecordRow), rows[chunk : chunk + 20_000])
    reports = ReportService(UsageReportRepo(db), PriceTable(Settings().prices))
    scope = Scope("org", None)
    week = ReportQuery(
        starting_at=start, ending_at=start + timedelta(days=7), group_by=["workspace_id", "model"]
    )
    for name, run in (
        ("usage 1d by workspace+model", lambda: reports.usage(scope, week)),
        (
            "cost 1d by description",
            lambda: reports.cost(
                scope, ReportQuery(start, start + timedelta(days=7), group_by=["description"])
            ),
        ),
    ):
        began = time.perf_counter()
        await run()
        took = time.perf_counter() - began
        print(f"{name}: {took:.2f} s for {records} records ({records / took:,.0f} records/s)")
    await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().records))
