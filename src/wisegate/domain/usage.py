"""Usage records: one per Messages request, written even when the client went away.

Records are written off the request path: ``record`` queues the record and returns; one writer task
waits ``linger`` seconds for more to arrive and inserts whatever has queued in a single transaction,
so the database (and SQLite's write lock) is visited once per batch instead of once per request.
Reads (``for_request``, ``recent``) flush first, and ``close`` (the app's shutdown) flushes what is
left. A batch that fails
is retried row by row, so one bad row cannot lose the others; a row that still fails is logged.
"""

from __future__ import annotations

import asyncio
import logging

from wisegate.storage.repos import UsageRecord, UsageRepo

log = logging.getLogger("wisegate.usage")


class UsageService:
    def __init__(self, repo: UsageRepo, batch_size: int = 1000, linger: float = 0.05) -> None:
        self._repo = repo
        self._batch_size = batch_size
        self._linger = linger
        self._pending: list[UsageRecord] = []
        self._wake: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None

    async def record(self, record: UsageRecord) -> None:
        """Queue ``record``; it is in the database after the next batch (``flush`` waits for it)."""
        self._pending.append(record)
        if self._writer is None or self._writer.done():
            self._wake, self._drained, self._hurry = asyncio.Event(), asyncio.Event(), asyncio.Event()
            self._writer = asyncio.get_running_loop().create_task(self._run(), name="wisegate-usage-writer")
        assert self._wake is not None and self._drained is not None
        self._drained.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every queued record is written."""
        if self._drained is not None and self._writer is not None and not self._writer.done():
            assert self._hurry is not None
            self._hurry.set()
            await self._drained.wait()

    async def close(self) -> None:
        """Write what is queued and stop the writer."""
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
            self._writer = None
        if self._pending:  # queued while stopping
            await self._write(self._pending)
            self._pending = []

    async def _run(self) -> None:
        assert self._wake is not None and self._drained is not None and self._hurry is not None
        while True:
            await self._wake.wait()
            if self._linger and not self._hurry.is_set():
                try:  # let a batch gather; a reader's flush() cuts this short
                    await asyncio.wait_for(self._hurry.wait(), self._linger)
                except TimeoutError:
                    pass
            self._wake.clear()
            self._hurry.clear()
            while self._pending:
                batch = self._pending[: self._batch_size]
                del self._pending[: self._batch_size]
                await self._write(batch)
            self._drained.set()

    async def _write(self, batch: list[UsageRecord]) -> None:
        try:
            await self._repo.add_many(batch)
            return
        except Exception:
            log.exception("could not write a batch of %d usage records; retrying one by one", len(batch))
        for record in batch:
            try:
                await self._repo.add_many([record])
            except Exception:
                log.exception(
                    "could not write the usage record", extra={"usage_request_id": record.request_id}
                )

    async def for_request(self, request_id: str) -> UsageRecord | None:
        await self.flush()
        return await self._repo.for_request(request_id)

    async def recent(self, workspace_id: str | None = None, limit: int = 100) -> list[UsageRecord]:
        await self.flush()
        return await self._repo.list_recent(workspace_id, limit)
