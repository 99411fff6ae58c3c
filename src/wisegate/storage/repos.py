"""Repositories: one class per aggregate; they own the SQL and return plain records, never ORM rows."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select

from wisegate.records.tenancy import ApiKey, Organization, Workspace
from wisegate.records.usage import UsageRecord
from wisegate.storage.db import Database
from wisegate.storage.tables import ApiKeyRow, OrganizationRow, UsageRecordRow, WorkspaceRow


def aware(value: datetime) -> datetime:
    """A datetime read back from the database, as UTC (SQLite drops the offset)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def key_from_row(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        row.id,
        row.organization_id,
        row.workspace_id,
        row.name,
        row.partial_key_hint,
        row.kind,
        row.status,
        aware(row.created_at),
        row.created_by_user_id,
        row.service_account_id,
    )


def _workspace(row: WorkspaceRow) -> Workspace:
    archived = aware(row.archived_at) if row.archived_at else None
    return Workspace(row.id, row.organization_id, row.name, aware(row.created_at), archived)


def usage_from_row(row: UsageRecordRow) -> UsageRecord:
    values = {f: getattr(row, f) for f in UsageRecord.__slots__}
    values["created_at"] = aware(row.created_at)
    return UsageRecord(**values)


class TenancyRepo:
    """Organizations, workspaces and keys."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def first_organization(self) -> Organization | None:
        async with self._db.read() as session:
            row = (
                await session.execute(select(OrganizationRow).order_by(OrganizationRow.created_at).limit(1))
            ).scalar_one_or_none()
        return Organization(row.id, row.name, aware(row.created_at)) if row else None

    async def create_organization(self, org: Organization, workspace: Workspace) -> None:
        """Create an organization together with its default workspace."""
        async with self._db.write() as session:
            session.add(OrganizationRow(id=org.id, name=org.name, created_at=org.created_at))
            await session.flush()
            session.add(
                WorkspaceRow(
                    id=workspace.id,
                    organization_id=org.id,
                    name=workspace.name,
                    created_at=workspace.created_at,
                    archived_at=None,
                )
            )

    async def create_workspace(self, workspace: Workspace) -> None:
        async with self._db.write() as session:
            session.add(
                WorkspaceRow(
                    id=workspace.id,
                    organization_id=workspace.organization_id,
                    name=workspace.name,
                    created_at=workspace.created_at,
                    archived_at=workspace.archived_at,
                )
            )

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        async with self._db.read() as session:
            row = await session.get(WorkspaceRow, workspace_id)
        return _workspace(row) if row else None

    async def list_workspaces(self, organization_id: str) -> list[Workspace]:
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(WorkspaceRow)
                    .where(WorkspaceRow.organization_id == organization_id)
                    .order_by(WorkspaceRow.created_at)
                )
            ).scalars()
            return [_workspace(row) for row in rows]

    async def add_key(self, key: ApiKey, key_hash: str) -> None:
        async with self._db.write() as session:
            session.add(
                ApiKeyRow(
                    id=key.id,
                    organization_id=key.organization_id,
                    workspace_id=key.workspace_id,
                    name=key.name,
                    key_hash=key_hash,
                    partial_key_hint=key.partial_key_hint,
                    kind=key.kind,
                    status=key.status,
                    created_at=key.created_at,
                    created_by_user_id=key.created_by_user_id,
                    service_account_id=key.service_account_id,
                )
            )

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        async with self._db.read() as session:
            row = (
                await session.execute(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
            ).scalar_one_or_none()
        return key_from_row(row) if row else None

    async def list_keys(self, organization_id: str) -> list[ApiKey]:
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(ApiKeyRow)
                    .where(ApiKeyRow.organization_id == organization_id)
                    .order_by(ApiKeyRow.created_at)
                )
            ).scalars()
            return [key_from_row(row) for row in rows]

    async def get_key(self, key_id: str) -> ApiKey | None:
        async with self._db.read() as session:
            row = await session.get(ApiKeyRow, key_id)
        return key_from_row(row) if row else None

    async def update_key(self, key_id: str, *, name: str | None, status: str | None) -> ApiKey | None:
        """Rename and/or change the status of a key; ``None`` leaves a field as it is."""
        async with self._db.write() as session:
            row = await session.get(ApiKeyRow, key_id)
            if row is None:
                return None
            if name is not None:
                row.name = name
            if status is not None:
                row.status = status
            return key_from_row(row)

    async def update_workspace(
        self, workspace_id: str, *, name: str | None = None, archived_at: datetime | None = None
    ) -> Workspace | None:
        async with self._db.write() as session:
            row = await session.get(WorkspaceRow, workspace_id)
            if row is None:
                return None
            if name is not None:
                row.name = name
            if archived_at is not None:
                row.archived_at = archived_at
            return _workspace(row)

    async def set_key_status(self, key_id: str, status: str) -> ApiKey | None:
        async with self._db.write() as session:
            row = await session.get(ApiKeyRow, key_id)
            if row is None:
                return None
            row.status = status
            return key_from_row(row)


class UsageRepo:
    """One usage record per request."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: UsageRecord) -> None:
        await self.add_many([record])

    async def add_many(self, records: list[UsageRecord]) -> None:
        """Insert ``records`` in one transaction."""
        rows = [{f: getattr(r, f) for f in UsageRecord.__slots__} for r in records]
        async with self._db.write() as session:
            await session.execute(insert(UsageRecordRow), rows)  # one executemany, no unit of work

    async def for_request(self, request_id: str) -> UsageRecord | None:
        async with self._db.read() as session:
            row = (
                await session.execute(select(UsageRecordRow).where(UsageRecordRow.request_id == request_id))
            ).scalar_one_or_none()
        return usage_from_row(row) if row else None

    async def list_recent(self, workspace_id: str | None = None, limit: int = 100) -> list[UsageRecord]:
        query = select(UsageRecordRow).order_by(UsageRecordRow.id.desc()).limit(limit)
        if workspace_id:
            query = query.where(UsageRecordRow.workspace_id == workspace_id)
        async with self._db.read() as session:
            return [usage_from_row(row) for row in (await session.execute(query)).scalars()]
