"""The usage sums behind the usage and cost reports, aggregated by the database.

One row per (minute, workspace, key, model, service tier, long context): the report code then folds
minutes into its buckets, so a report reads a few rows per minute of traffic, not every request.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, case, func, select

from wisegate.records.usage import UsageFilter, UsageSum
from wisegate.storage.db import Database
from wisegate.storage.tables import UsageRecordRow

LONG_CONTEXT = 200_000  # input tokens (with cache) above which a request is in the 200k-1M window


class UsageReportRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _minute(self) -> ColumnElement[str]:
        t = UsageRecordRow
        if self._db.is_sqlite:  # stored as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC
            return func.substr(t.created_at, 1, 16)
        return func.to_char(func.timezone("UTC", t.created_at), "YYYY-MM-DD HH24:MI")

    async def sums(self, where: UsageFilter) -> list[UsageSum]:
        """Token sums per minute and dimension for ``starting_at <= created_at < ending_at``."""
        t = UsageRecordRow
        minute = self._minute().label("minute")
        total_input = t.input_tokens + t.cache_creation_input_tokens + t.cache_read_input_tokens
        long_context = case((total_input > LONG_CONTEXT, 1), else_=0).label("long_context")
        dims = (minute, t.workspace_id, t.api_key_id, t.model, t.service_tier, long_context)
        query = (
            select(
                *dims,
                func.count(),
                func.sum(t.input_tokens),
                func.sum(t.output_tokens),
                func.sum(t.cache_creation_input_tokens),
                func.sum(t.cache_read_input_tokens),
            )
            .where(
                t.organization_id == where.organization_id,
                t.created_at >= where.starting_at,
                t.created_at < where.ending_at,
            )
            .group_by(*dims)
        )
        for column, values in (
            (t.workspace_id, where.workspace_ids),
            (t.api_key_id, where.api_key_ids),
            (t.model, where.models),
            (t.service_tier, where.service_tiers),
        ):
            if values:
                query = query.where(column.in_(list(values)))
        async with self._db.read() as session:
            rows = (await session.execute(query)).all()
        minutes: dict[str, datetime] = {}  # many rows share a minute; strptime is slow
        for row in rows:
            if row[0] not in minutes:
                minutes[row[0]] = datetime.strptime(row[0], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        return [
            UsageSum(
                minutes[row[0]],
                row[1],
                row[2],
                row[3],
                row[4],
                bool(row[5]),
                int(row[6]),
                int(row[7]),
                int(row[8]),
                int(row[9]),
                int(row[10]),
            )
            for row in rows
        ]
