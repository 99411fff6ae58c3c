"""ThreadRepo: the stored state of message threads (``message_threads``), scoped by workspace.

Continuing a thread claims its newest response atomically (one conditional ``UPDATE``), so two
requests continuing from the same response cannot both proceed, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import delete, or_, select, true, update

from wisegate.records.threads import ThreadRecord
from wisegate.storage.db import Database
from wisegate.storage.tables import MessageThreadRow

Refusal = Literal["not_found", "already_continued", "in_flight"]


class ThreadRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: ThreadRecord, *, continues: str | None = None) -> None:
        """Store ``record``; with ``continues``, mark that response continued and drop its state."""
        async with self._db.write() as session:
            if continues is not None:
                await session.execute(
                    update(MessageThreadRow)
                    .where(MessageThreadRow.id == continues)
                    .values(continued="done", state=None)
                )
            session.add(
                MessageThreadRow(
                    id=record.id,
                    organization_id=record.organization_id,
                    workspace_id=record.workspace_id,
                    model=record.model,
                    state=record.state,
                    created_at=record.created_at,
                    expires_at=record.expires_at,
                )
            )

    async def claim(
        self,
        workspace_id: str,
        message_id: str,
        now: datetime,
        stale_before: datetime,
        written_after: datetime | None = None,
    ) -> ThreadRecord | Refusal:
        """Claim the response ``message_id`` for one continuation, or say why it cannot be.

        A claim older than ``stale_before`` (its request died without finishing) may be taken over.
        """
        async with self._db.write() as session:
            claimed = await session.execute(
                update(MessageThreadRow)
                .where(
                    MessageThreadRow.id == message_id,
                    MessageThreadRow.workspace_id == workspace_id,
                    MessageThreadRow.expires_at > now,
                    true() if written_after is None else MessageThreadRow.created_at > written_after,
                    MessageThreadRow.state.is_not(None),
                    or_(
                        MessageThreadRow.continued.is_(None),
                        (MessageThreadRow.continued == "in_flight")
                        & (MessageThreadRow.continued_at < stale_before),
                    ),
                )
                .values(continued="in_flight", continued_at=now)
            )
            row = await session.get(MessageThreadRow, message_id)
            if (
                row is None
                or row.workspace_id != workspace_id
                or row.expires_at.replace(tzinfo=now.tzinfo) <= now
                or (written_after is not None and row.created_at.replace(tzinfo=now.tzinfo) <= written_after)
            ):
                return "not_found"
            if getattr(claimed, "rowcount", 0) != 1 or row.state is None:
                return "already_continued" if row.continued == "done" else "in_flight"
            return ThreadRecord(
                row.id,
                row.organization_id,
                row.workspace_id,
                row.model,
                row.state,
                row.created_at,
                row.expires_at,
            )

    async def release(self, message_id: str) -> None:
        """Give back a claim whose turn did not complete, so the response can be continued again."""
        async with self._db.write() as session:
            await session.execute(
                update(MessageThreadRow)
                .where(MessageThreadRow.id == message_id, MessageThreadRow.continued == "in_flight")
                .values(continued=None, continued_at=None)
            )

    async def delete_workspace(self, workspace_id: str) -> int:
        async with self._db.write() as session:
            result = await session.execute(
                delete(MessageThreadRow).where(MessageThreadRow.workspace_id == workspace_id)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def delete_expired(self, now: datetime, written_before: datetime | None = None) -> int:
        """Delete state past its ``expires_at``, or written before ``written_before`` (a retention
        lowered since it was written applies to it too)."""
        expired = MessageThreadRow.expires_at <= now
        if written_before is not None:
            expired = or_(expired, MessageThreadRow.created_at <= written_before)
        async with self._db.write() as session:
            result = await session.execute(delete(MessageThreadRow).where(expired))
        return int(getattr(result, "rowcount", 0) or 0)

    async def count(self, workspace_id: str) -> int:
        async with self._db.read() as session:
            rows = await session.execute(
                select(MessageThreadRow.id).where(MessageThreadRow.workspace_id == workspace_id)
            )
        return len(rows.all())
