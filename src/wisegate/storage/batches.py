"""BatchRepo: message batches and the durable queue of their requests.

Every request row moves once from ``queued`` to one final status (``succeeded``, ``errored``,
``canceled``, ``expired``). Workers claim queued rows with a lease (``claimed_by``/``claimed_at``):
on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, on SQLite under the single writer. A result is written
only by ``UPDATE … WHERE status = 'queued' AND claimed_by = <this worker>``, in the same statement that
changes the status, so a request can never get two results, whoever re-runs it after a crash.

``crashes`` counts the times a request was held by a worker that died (its lease lapsed): such a
*suspect* is claimed only by a worker running nothing else, and alone, so that a request that kills
its worker is the only one blamed for the next crash (``workers/batches.py`` ends it as ``errored``
past a bound).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from wisegate.records.batches import Batch, BatchOwner, Claim, Completion, NewBatch, RequestCounts
from wisegate.storage.db import Database
from wisegate.storage.repos import aware, key_from_row
from wisegate.storage.tables import ApiKeyRow, BatchRequestRow, MessageBatchRow

FINAL_STATUSES = ("succeeded", "errored", "canceled", "expired")
_INSERT_CHUNK = 1000


def _maybe(value: datetime | None) -> datetime | None:
    return aware(value) if value is not None else None


def _batch(row: MessageBatchRow, live: dict[str, int] | None) -> Batch:
    if row.processing_status == "ended" or live is None:
        counts = RequestCounts(
            processing=row.request_count - row.succeeded - row.errored - row.canceled - row.expired,
            succeeded=row.succeeded,
            errored=row.errored,
            canceled=row.canceled,
            expired=row.expired,
        )
    else:
        counts = RequestCounts(
            processing=live.get("queued", 0),
            succeeded=live.get("succeeded", 0),
            errored=live.get("errored", 0),
            canceled=live.get("canceled", 0),
            expired=live.get("expired", 0),
        )
    return Batch(
        id=row.id,
        organization_id=row.organization_id,
        workspace_id=row.workspace_id,
        api_key_id=row.api_key_id,
        processing_status=row.processing_status,
        request_counts=counts,
        created_at=aware(row.created_at),
        expires_at=aware(row.expires_at),
        ended_at=_maybe(row.ended_at),
        cancel_initiated_at=_maybe(row.cancel_initiated_at),
        archived_at=_maybe(row.archived_at),
    )


def _open_queued(cutoff: datetime) -> ColumnElement[bool]:
    """Queued rows nobody holds a live lease on."""
    r = BatchRequestRow
    return and_(r.status == "queued", or_(r.claimed_by.is_(None), r.claimed_at < cutoff))


class BatchRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, batch: NewBatch, requests: Iterable[tuple[str, str]]) -> int:
        """Insert the batch and all its ``(custom_id, params_json)`` requests in one transaction."""
        count = 0
        async with self._db.write() as session:
            session.add(
                MessageBatchRow(
                    id=batch.id,
                    organization_id=batch.organization_id,
                    workspace_id=batch.workspace_id,
                    api_key_id=batch.api_key_id,
                    processing_status="in_progress",
                    request_count=0,
                    succeeded=0,
                    errored=0,
                    canceled=0,
                    expired=0,
                    created_at=batch.created_at,
                    expires_at=batch.expires_at,
                )
            )
            await session.flush()
            chunk: list[dict[str, object]] = []
            for custom_id, params in requests:
                chunk.append(
                    {
                        "batch_id": batch.id,
                        "position": count,
                        "custom_id": custom_id,
                        "params": params,
                        "status": "queued",
                        "attempts": 0,
                    }
                )
                count += 1
                if len(chunk) >= _INSERT_CHUNK:
                    await session.execute(insert(BatchRequestRow), chunk)
                    chunk = []
            if chunk:
                await session.execute(insert(BatchRequestRow), chunk)
            await session.execute(
                update(MessageBatchRow).where(MessageBatchRow.id == batch.id).values(request_count=count)
            )
        return count

    async def _live_counts(
        self, session: AsyncSession, batch_ids: Sequence[str]
    ) -> dict[str, dict[str, int]]:
        if not batch_ids:
            return {}
        r = BatchRequestRow
        rows = await session.execute(
            select(r.batch_id, r.status, func.count())
            .where(r.batch_id.in_(batch_ids))
            .group_by(r.batch_id, r.status)
        )
        counts: dict[str, dict[str, int]] = {}
        for batch_id, status, n in rows:
            counts.setdefault(batch_id, {})[status] = n
        return counts

    async def get(self, batch_id: str, workspace_id: str | None = None) -> Batch | None:
        async with self._db.read() as session:
            row = await session.get(MessageBatchRow, batch_id)
            if row is None or (workspace_id is not None and row.workspace_id != workspace_id):
                return None
            live = None
            if row.processing_status != "ended":
                live = (await self._live_counts(session, [row.id])).get(row.id, {})
            return _batch(row, live)

    async def page(
        self, workspace_id: str, limit: int, *, before_id: str | None = None, after_id: str | None = None
    ) -> tuple[list[Batch], bool] | None:
        """Newest first; ``None`` when the cursor id is not a batch of this workspace."""
        b = MessageBatchRow
        async with self._db.read() as session:
            query = select(b).where(b.workspace_id == workspace_id)
            cursor_id = before_id or after_id
            if cursor_id:
                cursor = await session.get(b, cursor_id)
                if cursor is None or cursor.workspace_id != workspace_id:
                    return None
                key = tuple_(b.created_at, b.id)
                mark = tuple_(bindparam("c_at", cursor.created_at), bindparam("c_id", cursor.id))
                query = query.where(key < mark if after_id else key > mark)
            if before_id:
                query = query.order_by(b.created_at, b.id)
            else:
                query = query.order_by(b.created_at.desc(), b.id.desc())
            rows = list((await session.execute(query.limit(limit + 1))).scalars())
            has_more = len(rows) > limit
            rows = rows[:limit]
            if before_id:
                rows.reverse()
            live = await self._live_counts(session, [r.id for r in rows if r.processing_status != "ended"])
            return [_batch(r, live.get(r.id, {})) for r in rows], has_more

    async def cancel(self, batch_id: str, workspace_id: str, now: datetime, cutoff: datetime) -> bool:
        """Mark an in-progress batch canceling and cancel its requests nobody is running; False if absent."""
        b, r = MessageBatchRow, BatchRequestRow
        async with self._db.write() as session:
            row = await session.get(b, batch_id, with_for_update=True)
            if row is None or row.workspace_id != workspace_id:
                return False
            if row.processing_status != "in_progress":
                return True
            row.processing_status = "canceling"
            row.cancel_initiated_at = now
            await session.flush()
            await session.execute(
                update(r)
                .where(r.batch_id == batch_id, _open_queued(cutoff))
                .values(status="canceled", ended_at=now, params=None)
            )
        return True

    async def delete(self, batch_id: str) -> None:
        async with self._db.write() as session:
            await session.execute(delete(BatchRequestRow).where(BatchRequestRow.batch_id == batch_id))
            await session.execute(delete(MessageBatchRow).where(MessageBatchRow.id == batch_id))

    async def results(
        self, batch_id: str, chunk: int = 500
    ) -> AsyncIterator[list[tuple[str, str, str | None]]]:
        """``(custom_id, status, result_json)`` rows in chunks, read by keyset (never the whole batch)."""
        r = BatchRequestRow
        last = -1
        while True:
            async with self._db.read() as session:
                rows = (
                    await session.execute(
                        select(r.id, r.custom_id, r.status, r.result)
                        .where(r.batch_id == batch_id, r.id > last)
                        .order_by(r.id)
                        .limit(chunk)
                    )
                ).all()
            if not rows:
                return
            last = rows[-1][0]
            yield [(row[1], row[2], row[3]) for row in rows]
            if len(rows) < chunk:
                return

    async def claim(
        self, worker: str, now: datetime, cutoff: datetime, limit: int, *, alone: bool = True
    ) -> tuple[list[Claim], bool]:
        """Lease up to ``limit`` queued requests of in-progress batches, oldest first.

        A suspect (a request held by a worker that died: ``crashes`` > 0, or a lapsed lease, which
        counts one more crash now) is leased only when ``alone`` (the worker runs nothing else), and
        then by itself. Returns the claims and whether a suspect was passed over (the worker should
        finish what it runs and ask again ``alone``).
        """
        b, r = MessageBatchRow, BatchRequestRow
        waiting = (
            select(r.id)
            .join(b, b.id == r.batch_id)
            .where(_open_queued(cutoff), b.processing_status == "in_progress")
        )
        suspect = or_(r.crashes > 0, r.claimed_by.is_not(None))
        pick = (
            waiting.add_columns(suspect).order_by(r.id).limit(limit).with_for_update(skip_locked=True, of=r)
        )
        async with self._db.read() as session:  # idle polls stay read-only: no write lock taken
            if (await session.execute(waiting.limit(1))).first() is None:
                return [], False
        async with self._db.write() as session:
            picked = (await session.execute(pick)).all()
            suspects = [row[0] for row in picked if row[1]]
            if suspects and alone:
                ids = suspects[:1]
            else:
                ids = [row[0] for row in picked if not row[1]]
            if not ids:
                return [], bool(suspects)
            rows = await session.execute(
                update(r)
                .where(r.id.in_(ids), _open_queued(cutoff))
                .values(
                    claimed_by=worker,
                    claimed_at=now,
                    attempts=r.attempts + 1,
                    crashes=r.crashes + case((r.claimed_by.is_not(None), 1), else_=0),
                )
                .returning(r.id, r.batch_id, r.position, r.custom_id, r.params, r.attempts, r.crashes)
            )
            claims = [Claim(row[0], row[1], row[2], row[3], row[4] or "{}", row[5], row[6]) for row in rows]
        claims.sort(key=lambda c: c.id)
        return claims, bool(suspects) and not (alone and claims)

    async def owner(self, batch_id: str) -> BatchOwner | None:
        async with self._db.read() as session:
            found = (
                await session.execute(
                    select(ApiKeyRow, MessageBatchRow.expires_at)
                    .join(MessageBatchRow, MessageBatchRow.api_key_id == ApiKeyRow.id)
                    .where(MessageBatchRow.id == batch_id)
                )
            ).first()
        if found is None:
            return None
        row, expires_at = found
        return BatchOwner(key_from_row(row), aware(expires_at))

    async def heartbeat(self, worker: str, now: datetime) -> None:
        """Renew the leases this worker holds."""
        r = BatchRequestRow
        async with self._db.write() as session:
            await session.execute(
                update(r).where(r.claimed_by == worker, r.status == "queued").values(claimed_at=now)
            )

    async def queue(self) -> tuple[int, int]:
        """Requests waiting to run (no live claim) and running (claimed), over every batch."""
        r = BatchRequestRow
        async with self._db.read() as session:
            rows = await session.execute(
                select(r.claimed_by.is_not(None), func.count())
                .where(r.status == "queued")
                .group_by(r.claimed_by.is_not(None))
            )
            counts = {bool(claimed): n for claimed, n in rows}
        return counts.get(False, 0), counts.get(True, 0)

    async def release(self, worker: str, ids: Sequence[int]) -> None:
        """Give back claimed requests this worker did not finish, so any worker may take them at once."""
        if not ids:
            return
        r = BatchRequestRow
        async with self._db.write() as session:
            await session.execute(
                update(r)
                .where(r.id.in_(ids), r.claimed_by == worker, r.status == "queued")
                .values(claimed_by=None, claimed_at=None)
            )

    async def complete(self, worker: str, completions: Sequence[Completion], now: datetime) -> None:
        """Write final states; a request no longer queued or leased to ``worker`` is left untouched."""
        if not completions:
            return
        r = BatchRequestRow
        statement = (
            update(r)
            .where(r.id == bindparam("rid"), r.status == "queued", r.claimed_by == bindparam("worker"))
            .values(status=bindparam("new_status"), result=bindparam("new_result"), ended_at=now, params=None)
        )
        rows = [
            {"rid": c.request_id, "worker": worker, "new_status": c.status, "new_result": c.result}
            for c in completions
        ]
        async with self._db.write() as session:
            connection = await session.connection()
            await connection.execute(statement, rows)

    async def finish_if_done(self, batch_id: str, now: datetime) -> bool:
        """End the batch (freezing its counts) when none of its requests is queued any more."""
        b, r = MessageBatchRow, BatchRequestRow
        async with self._db.read() as session:
            queued = await session.execute(
                select(r.id).where(r.batch_id == batch_id, r.status == "queued").limit(1)
            )
            if queued.first() is not None:
                return False
        async with self._db.write() as session:
            counts = (await self._live_counts(session, [batch_id])).get(batch_id, {})
            if counts.get("queued", 0):
                return False
            result = await session.execute(
                update(b)
                .where(b.id == batch_id, b.processing_status != "ended")
                .values(
                    processing_status="ended",
                    ended_at=now,
                    succeeded=counts.get("succeeded", 0),
                    errored=counts.get("errored", 0),
                    canceled=counts.get("canceled", 0),
                    expired=counts.get("expired", 0),
                )
            )
            return bool(getattr(result, "rowcount", 0))

    async def canceling(self) -> set[str]:
        async with self._db.read() as session:
            rows = await session.execute(
                select(MessageBatchRow.id).where(MessageBatchRow.processing_status == "canceling")
            )
            return set(rows.scalars())

    async def sweep(self, now: datetime, cutoff: datetime, archive_before: datetime) -> list[str]:
        """Expire overdue batches, cancel abandoned requests of canceling ones, end finished batches,
        and delete the results of batches created before ``archive_before``. Returns the ended ids."""
        b, r = MessageBatchRow, BatchRequestRow
        async with self._db.read() as session:
            running = await session.execute(select(b.id).where(b.processing_status != "ended").limit(1))
            archivable = await session.execute(
                select(b.id).where(b.archived_at.is_(None), b.created_at <= archive_before).limit(1)
            )
            if running.first() is None and archivable.first() is None:
                return []
        async with self._db.write() as session:
            overdue = select(b.id).where(b.processing_status != "ended", b.expires_at <= now)
            await session.execute(
                update(r)
                .where(r.status == "queued", r.batch_id.in_(overdue))
                .values(status="expired", ended_at=now, params=None)
            )
            canceling = select(b.id).where(b.processing_status == "canceling")
            await session.execute(
                update(r)
                .where(_open_queued(cutoff), r.batch_id.in_(canceling))
                .values(status="canceled", ended_at=now, params=None)
            )
        async with self._db.read() as session:
            candidates = list(
                (
                    await session.execute(
                        select(b.id).where(
                            b.processing_status != "ended",
                            ~exists().where(r.batch_id == b.id, r.status == "queued"),
                        )
                    )
                ).scalars()
            )
        ended = [batch_id for batch_id in candidates if await self.finish_if_done(batch_id, now)]
        async with self._db.write() as session:
            stale = select(b.id).where(
                b.archived_at.is_(None), b.processing_status == "ended", b.created_at <= archive_before
            )
            stale_ids = list((await session.execute(stale)).scalars())
            if stale_ids:
                await session.execute(delete(r).where(r.batch_id.in_(stale_ids)))
                await session.execute(update(b).where(b.id.in_(stale_ids)).values(archived_at=now))
        return ended
