"""ContainerRepo: code execution containers (``code_containers``), scoped by workspace."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update

from wisegate.records.containers import ContainerRecord
from wisegate.storage.db import Database
from wisegate.storage.tables import ContainerRow


def _record(row: ContainerRow) -> ContainerRecord:
    return ContainerRecord(
        id=row.id,
        organization_id=row.organization_id,
        workspace_id=row.workspace_id,
        node=row.node,
        skills=row.skills,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        run_ms=row.run_ms,
    )


class ContainerRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: ContainerRecord) -> None:
        async with self._db.write() as session:
            session.add(
                ContainerRow(
                    id=record.id,
                    organization_id=record.organization_id,
                    workspace_id=record.workspace_id,
                    node=record.node,
                    skills=record.skills,
                    run_ms=record.run_ms,
                    created_at=record.created_at,
                    last_used_at=record.last_used_at,
                    expires_at=record.expires_at,
                )
            )

    async def get(self, workspace_id: str, container_id: str) -> ContainerRecord | None:
        async with self._db.read() as session:
            row = await session.scalar(
                select(ContainerRow).where(
                    ContainerRow.id == container_id, ContainerRow.workspace_id == workspace_id
                )
            )
            return _record(row) if row is not None else None

    async def touch(
        self, container_id: str, used_at: datetime, expires_at: datetime, skills: str, run_ms: int
    ) -> None:
        """Record a use: the new expiry, the container's skills, and ``run_ms`` more sandbox time."""
        async with self._db.write() as session:
            await session.execute(
                update(ContainerRow)
                .where(ContainerRow.id == container_id)
                .values(
                    last_used_at=used_at,
                    expires_at=expires_at,
                    skills=skills,
                    run_ms=ContainerRow.run_ms + run_ms,
                )
            )

    async def expired(self, node: str, now: datetime, limit: int = 100) -> list[str]:
        async with self._db.read() as session:
            rows = await session.scalars(
                select(ContainerRow.id)
                .where(ContainerRow.node == node, ContainerRow.expires_at <= now)
                .limit(limit)
            )
            return list(rows)

    async def count_live(
        self, now: datetime, *, workspace_id: str | None = None, node: str | None = None
    ) -> int:
        """Containers not yet expired, of one workspace and/or on one node."""
        query = select(func.count()).select_from(ContainerRow).where(ContainerRow.expires_at > now)
        if workspace_id is not None:
            query = query.where(ContainerRow.workspace_id == workspace_id)
        if node is not None:
            query = query.where(ContainerRow.node == node)
        async with self._db.read() as session:
            return int(await session.scalar(query) or 0)

    async def delete(self, container_id: str) -> None:
        async with self._db.write() as session:
            await session.execute(delete(ContainerRow).where(ContainerRow.id == container_id))
