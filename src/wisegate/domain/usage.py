"""Reading usage records. They are written by the settlement (``domain/limits``), one per Messages
request, in the transaction that debits its cost — even when the client went away. Settlements are
committed in the background; ``settled`` waits for this process's ones before a read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from wisegate.records.usage import UsageRecord
from wisegate.storage.repos import UsageRepo


async def _nothing() -> None:
    return None


class UsageService:
    def __init__(self, repo: UsageRepo, settled: Callable[[], Awaitable[None]] = _nothing) -> None:
        self._repo = repo
        self._settled = settled

    async def for_request(self, request_id: str) -> UsageRecord | None:
        await self._settled()
        return await self._repo.for_request(request_id)

    async def recent(self, workspace_id: str | None = None, limit: int = 100) -> list[UsageRecord]:
        await self._settled()
        return await self._repo.list_recent(workspace_id, limit)
