"""Reading usage records. They are written by the settlement (``domain/limits``), one per Messages
request, in the transaction that debits its cost — even when the client went away."""

from __future__ import annotations

from wisegate.storage.repos import UsageRecord, UsageRepo


class UsageService:
    def __init__(self, repo: UsageRepo) -> None:
        self._repo = repo

    async def for_request(self, request_id: str) -> UsageRecord | None:
        return await self._repo.for_request(request_id)

    async def recent(self, workspace_id: str | None = None, limit: int = 100) -> list[UsageRecord]:
        return await self._repo.list_recent(workspace_id, limit)
