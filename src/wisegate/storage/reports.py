"""The usage rows behind the usage and cost reports, streamed from the database in time order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from wisegate.storage.db import Database
from wisegate.storage.tables import UsageRecordRow


@dataclass(frozen=True, slots=True)
class UsageRow:
    created_at: datetime
    workspace_id: str
    api_key_id: str
    model: str
    service_tier: str
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which usage records count: one organization, a time range, and optional id lists (empty = all)."""

    organization_id: str
    starting_at: datetime
    ending_at: datetime
    workspace_ids: Sequence[str] = ()
    api_key_ids: Sequence[str] = ()
    models: Sequence[str] = ()
    service_tiers: Sequence[str] = ()


class UsageReportRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def rows(self, where: UsageFilter) -> AsyncIterator[UsageRow]:
        """Matching records with ``starting_at <= created_at < ending_at``, streamed in batches."""
        t = UsageRecordRow
        query = select(
            t.created_at,
            t.workspace_id,
            t.api_key_id,
            t.model,
            t.service_tier,
            t.input_tokens,
            t.output_tokens,
            t.cache_creation_input_tokens,
            t.cache_read_input_tokens,
        ).where(
            t.organization_id == where.organization_id,
            t.created_at >= where.starting_at,
            t.created_at < where.ending_at,
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
            result = await session.stream(query.execution_options(yield_per=2000))
            async for row in result:
                created = row[0] if row[0].tzinfo else row[0].replace(tzinfo=UTC)
                yield UsageRow(created, *row[1:])
