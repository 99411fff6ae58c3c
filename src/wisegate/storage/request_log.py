"""The request log: usage records read one by one (newest first, by cursor), never their bodies —
Wisegate stores no prompt or completion text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, func, or_, select

from wisegate.records.usage import UsageRecord
from wisegate.storage.db import Database
from wisegate.storage.repos import usage_from_row
from wisegate.storage.tables import ApiKeyRow, UsageRecordRow, WorkspaceRow


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Which records: one organization, optionally narrowed; ``workspace_ids`` None = every workspace.
    ``before``: the (created_at, id) of the last record of the previous page."""

    organization_id: str
    workspace_ids: frozenset[str] | None = None
    api_key_id: str | None = None
    model: str | None = None
    status: str | None = None  # "ok", "error", or an error type
    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None
    before: tuple[datetime, int] | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """A usage record with its row id (the cursor's tie-break) and the names it is shown with."""

    id: int
    record: UsageRecord
    workspace_name: str | None = None
    key_name: str | None = None
    key_hint: str | None = None


def _query(q: LogQuery) -> Select[UsageRecordRow, str, str, str]:
    row = UsageRecordRow
    # The names come from the key's and the workspace's primary keys, in the same statement.
    named = (
        select(row, WorkspaceRow.name, ApiKeyRow.name, ApiKeyRow.partial_key_hint)
        .outerjoin(WorkspaceRow, WorkspaceRow.id == row.workspace_id)
        .outerjoin(ApiKeyRow, ApiKeyRow.id == row.api_key_id)
    )
    if q.request_id is not None:  # the unique index alone (the organization is checked on the row)
        return named.where(row.request_id == q.request_id)
    query = named.where(row.organization_id == q.organization_id)
    if q.workspace_ids is not None:
        query = query.where(row.workspace_id.in_(sorted(q.workspace_ids)))
    if q.api_key_id is not None:
        query = query.where(row.api_key_id == q.api_key_id)
    if q.model is not None:
        query = query.where(row.model == q.model)
    if q.status == "ok":
        query = query.where(row.error_type.is_(None))
    elif q.status == "error":
        query = query.where(row.error_type.is_not(None))
    elif q.status is not None:
        query = query.where(row.error_type == q.status)
    if q.since is not None:
        query = query.where(row.created_at >= q.since)
    if q.until is not None:
        query = query.where(row.created_at < q.until)
    if q.before is not None:
        at, last_id = q.before
        query = query.where(or_(row.created_at < at, and_(row.created_at == at, row.id < last_id)))
    return query.order_by(row.created_at.desc(), row.id.desc()).limit(q.limit)


class RequestLogRepo:
    """Pages of the request log, newest first: each page is one range scan of an index —
    (organization | workspace | key, created_at) — or the unique request id."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def cost_of_keys(self, api_key_ids: Sequence[str], since: datetime) -> int:
        """Picodollars spent by these keys since ``since``."""
        query = select(func.coalesce(func.sum(UsageRecordRow.cost_picousd), 0)).where(
            UsageRecordRow.api_key_id.in_(list(api_key_ids)), UsageRecordRow.created_at >= since
        )
        async with self._db.read() as session:
            return int((await session.execute(query)).scalar_one())

    async def page(self, q: LogQuery) -> list[LoggedRequest]:
        if q.workspace_ids is not None and not q.workspace_ids:
            return []
        async with self._db.read() as session:
            rows = (await session.execute(_query(q))).all()
        found = [
            LoggedRequest(row.id, usage_from_row(row), workspace, key, hint)
            for row, workspace, key, hint in rows
        ]
        if q.request_id is not None:
            found = [
                f
                for f in found
                if f.record.organization_id == q.organization_id
                and (q.workspace_ids is None or f.record.workspace_id in q.workspace_ids)
            ]
        return found
