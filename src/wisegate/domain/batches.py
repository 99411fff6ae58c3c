"""Message Batches: the batch state machine (in_progress → canceling → ended) and its results.

Requests are stored once in ``batch_requests`` (their ``params`` are validated when they run);
workers (``workers/batches.py``) run them through :class:`~wisegate.domain.messages.MessageService`.
A batch expires 24 hours after creation (what is still queued then ends as ``expired``) and its
results are deleted 29 days after creation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import timedelta

from wisegate.domain.clock import Clock
from wisegate.domain.keys import Principal
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.bounds import echo
from wisegate.protocol.messages import new_id
from wisegate.records.batches import Batch, BatchOwner, Claim, Completion, NewBatch
from wisegate.storage.batches import BatchRepo

EXPIRES_AFTER = timedelta(hours=24)
RESULTS_KEPT = timedelta(days=29)


class BatchService:
    def __init__(
        self,
        repo: BatchRepo,
        clock: Clock,
        unsettle: Callable[[str], Awaitable[None]],
        lease_seconds: float = 60.0,
        max_crashes: int = 3,
    ) -> None:
        self.repo = repo
        self._unsettle = unsettle
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        # A request held by a worker that died this many times ends errored (workers/batches.py).
        self.max_crashes = max_crashes
        # Set when a batch is submitted, so an in-process worker starts without waiting for its poll.
        self.submitted = asyncio.Event()

    async def queue(self) -> tuple[int, int]:
        """Batch requests queued and running, over every batch and worker (``/metrics``)."""
        return await self.repo.queue()

    async def create(self, principal: Principal, requests: Iterable[tuple[str, str]]) -> Batch:
        """Store a batch: ``requests`` yields ``(custom_id, params_json)``, envelopes already checked."""
        now = self.clock.now()
        batch = NewBatch(
            id=new_id("msgbatch"),
            organization_id=principal.organization_id,
            workspace_id=principal.workspace_id,
            api_key_id=principal.key.id,
            created_at=now,
            expires_at=now + EXPIRES_AFTER,
        )
        await self.repo.create(batch, requests)
        self.submitted.set()
        return await self.get(principal, batch.id)

    async def get(self, principal: Principal, batch_id: str) -> Batch:
        batch = await self.repo.get(batch_id, principal.workspace_id)
        if batch is None:
            raise NotFound(f"message batch {echo(batch_id)} not found")
        return batch

    async def page(
        self, principal: Principal, limit: int, before_id: str | None, after_id: str | None
    ) -> tuple[list[Batch], bool]:
        if before_id and after_id:
            raise InvalidRequest("before_id and after_id cannot both be set")
        found = await self.repo.page(principal.workspace_id, limit, before_id=before_id, after_id=after_id)
        if found is None:
            cursor = "before_id" if before_id else "after_id"
            raise InvalidRequest(
                f"{cursor}: no message batch {echo(before_id or after_id)} in this workspace"
            )
        return found

    async def cancel(self, principal: Principal, batch_id: str) -> Batch:
        """Start canceling: requests not yet running end as ``canceled`` now, running ones finish."""
        now = self.clock.now()
        if not await self.repo.cancel(batch_id, principal.workspace_id, now, now - self.lease):
            raise NotFound(f"message batch {echo(batch_id)} not found")
        await self.repo.finish_if_done(batch_id, now)
        return await self.get(principal, batch_id)

    async def delete(self, principal: Principal, batch_id: str) -> None:
        batch = await self.get(principal, batch_id)
        if batch.processing_status != "ended":
            raise InvalidRequest(
                f"message batch {batch_id} is {batch.processing_status}; cancel it and wait until it has "
                "ended before deleting it"
            )
        await self.repo.delete(batch_id)

    async def results(self, principal: Principal, batch_id: str) -> AsyncIterator[bytes]:
        """The results as JSON Lines, read from storage in chunks. Checks run before the first byte."""
        batch = await self.get(principal, batch_id)
        if batch.processing_status != "ended":
            raise InvalidRequest(
                f"message batch {batch_id} is {batch.processing_status}; its results are available once "
                "processing has ended"
            )
        if batch.archived_at is not None:
            raise NotFound(
                f"the results of message batch {batch_id} were deleted on {batch.archived_at:%Y-%m-%d} "
                f"({RESULTS_KEPT.days} days after it was created)"
            )
        return self._lines(batch_id)

    async def _lines(self, batch_id: str) -> AsyncIterator[bytes]:
        async for rows in self.repo.results(batch_id):
            yield "".join(
                result_line(custom_id, status, result) for custom_id, status, result in rows
            ).encode()

    async def sweep(self) -> list[str]:
        """Expire overdue batches, end finished ones and delete results past 29 days."""
        now = self.clock.now()
        return await self.repo.sweep(now, now - self.lease, now - RESULTS_KEPT)

    async def claim(self, worker: str, limit: int, *, alone: bool = True) -> tuple[list[Claim], bool]:
        """Lease up to ``limit`` queued requests to ``worker`` (including those whose lease lapsed).

        A request held by a worker that died (a suspect) is leased only ``alone`` and by itself; the
        flag says a suspect was passed over (see ``BatchRepo.claim``)."""
        now = self.clock.now()
        return await self.repo.claim(worker, now, now - self.lease, limit, alone=alone)

    async def owner(self, batch_id: str) -> BatchOwner | None:
        """The key that created a batch and its deadline; ``None`` once the batch is gone."""
        return await self.repo.owner(batch_id)

    async def heartbeat(self, worker: str) -> None:
        """Renew the leases ``worker`` holds."""
        await self.repo.heartbeat(worker, self.clock.now())

    async def release(self, worker: str, ids: Sequence[int]) -> None:
        """Give claimed requests back to the queue, unrun."""
        await self.repo.release(worker, ids)

    async def unsettle(self, request_id: str) -> None:
        """Unbill what an interrupted earlier attempt of a batch request recorded, before a re-run:
        batch requests are billed under a request id fixed per request, so each is billed once."""
        await self._unsettle(request_id)

    async def complete(self, worker: str, completions: Sequence[Completion]) -> None:
        """Write the results of requests ``worker`` holds, each once."""
        await self.repo.complete(worker, completions, self.clock.now())

    async def finish_if_done(self, batch_id: str) -> None:
        """End a batch whose requests all have a result."""
        await self.repo.finish_if_done(batch_id, self.clock.now())

    async def canceling(self) -> set[str]:
        """Ids of the batches being canceled."""
        return await self.repo.canceling()


def result_line(custom_id: str, status: str, result: str | None) -> str:
    """One line of the results file; ``result`` is stored JSON for succeeded and errored requests."""
    body = result if result is not None else json.dumps({"type": status})
    return f'{{"custom_id":{json.dumps(custom_id)},"result":{body}}}\n'
