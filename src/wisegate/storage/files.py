"""FileRepo and SkillRepo: metadata of stored files and skills (the bytes live in a blob store)."""

from __future__ import annotations

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wisegate.records.files import FileRecord, Position, SkillRecord, SkillVersionRecord
from wisegate.storage.db import Database
from wisegate.storage.repos import aware
from wisegate.storage.tables import FileRow, SkillRow, SkillVersionRow


class NameTaken(Exception):
    """A skill with this name already exists in the workspace."""


def _file(row: FileRow) -> FileRecord:
    return FileRecord(
        row.id,
        row.organization_id,
        row.workspace_id,
        row.filename,
        row.mime_type,
        row.size_bytes,
        row.downloadable,
        row.blob_key,
        aware(row.created_at),
        aware(row.expires_at) if row.expires_at else None,
    )


def _version(row: SkillVersionRow) -> SkillVersionRecord:
    values = {f: getattr(row, f) for f in SkillVersionRecord.__slots__}
    values["created_at"] = aware(row.created_at)
    return SkillVersionRecord(**values)


class FileRepo:
    """File metadata, always scoped by workspace."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: FileRecord) -> None:
        async with self._db.write() as session:
            session.add(FileRow(**{f: getattr(record, f) for f in FileRecord.__slots__}))

    async def get(self, workspace_id: str, file_id: str) -> FileRecord | None:
        async with self._db.read() as session:
            row = await session.get(FileRow, file_id)
        return _file(row) if row is not None and row.workspace_id == workspace_id else None

    async def delete(self, workspace_id: str, file_id: str) -> FileRecord | None:
        async with self._db.write() as session:
            row = await session.get(FileRow, file_id)
            if row is None or row.workspace_id != workspace_id:
                return None
            record = _file(row)
            await session.delete(row)
            return record

    async def used_bytes(self, organization_id: str) -> int:
        async with self._db.read() as session:
            total = (
                await session.execute(
                    select(func.coalesce(func.sum(FileRow.size_bytes), 0)).where(
                        FileRow.organization_id == organization_id
                    )
                )
            ).scalar_one()
        return int(total)

    async def page(
        self,
        workspace_id: str,
        limit: int,
        *,
        after: Position | None = None,
        before: Position | None = None,
        ids: list[str] | None = None,
    ) -> tuple[list[FileRecord], bool]:
        """Newest first; ``after`` continues past that file (older), ``before`` returns newer ones."""
        query = select(FileRow).where(FileRow.workspace_id == workspace_id)
        if ids is not None:
            query = query.where(FileRow.id.in_(ids))
        if after is not None:
            query = query.where(
                or_(
                    FileRow.created_at < after[0],
                    and_(FileRow.created_at == after[0], FileRow.id < after[1]),
                )
            )
        if before is not None:
            query = query.where(
                or_(
                    FileRow.created_at > before[0],
                    and_(FileRow.created_at == before[0], FileRow.id > before[1]),
                )
            ).order_by(FileRow.created_at.asc(), FileRow.id.asc())
        else:
            query = query.order_by(FileRow.created_at.desc(), FileRow.id.desc())
        async with self._db.read() as session:
            rows = list((await session.execute(query.limit(limit + 1))).scalars())
        has_more = len(rows) > limit
        records = [_file(row) for row in rows[:limit]]
        if before is not None:
            records.reverse()
        return records, has_more


class SkillRepo:
    """Skills and their versions, scoped by workspace."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        skill: SkillRecord,
        version: SkillVersionRecord,
    ) -> None:
        """Insert a skill with its first version; :class:`NameTaken` when the name is in use."""
        try:
            async with self._db.write() as session:
                session.add(
                    SkillRow(
                        id=skill.id,
                        organization_id=skill.organization_id,
                        workspace_id=skill.workspace_id,
                        name=skill.name,
                        display_name=skill.display_name,
                        created_at=skill.created_at,
                        updated_at=skill.updated_at,
                    )
                )
                await session.flush()
                session.add(SkillVersionRow(**{f: getattr(version, f) for f in SkillVersionRecord.__slots__}))
        except IntegrityError:
            raise NameTaken(skill.name) from None

    async def add_version(self, version: SkillVersionRecord) -> None:
        async with self._db.write() as session:
            session.add(SkillVersionRow(**{f: getattr(version, f) for f in SkillVersionRecord.__slots__}))
            skill = await session.get(SkillRow, version.skill_id)
            if skill is not None:
                skill.updated_at = version.created_at

    async def get(self, workspace_id: str, skill_id: str) -> SkillRecord | None:
        async with self._db.read() as session:
            row = await session.get(SkillRow, skill_id)
            if row is None or row.workspace_id != workspace_id:
                return None
            latest = await self._latest(session, skill_id)
        return self._skill(row, latest)

    async def page(
        self, workspace_id: str, limit: int, after: Position | None
    ) -> tuple[list[SkillRecord], bool]:
        query = select(SkillRow).where(SkillRow.workspace_id == workspace_id)
        if after is not None:
            query = query.where(
                or_(
                    SkillRow.created_at < after[0],
                    and_(SkillRow.created_at == after[0], SkillRow.id < after[1]),
                )
            )
        query = query.order_by(SkillRow.created_at.desc(), SkillRow.id.desc()).limit(limit + 1)
        async with self._db.read() as session:
            rows = list((await session.execute(query)).scalars())
            result = [self._skill(row, await self._latest(session, row.id)) for row in rows[:limit]]
        return result, len(rows) > limit

    async def delete(self, workspace_id: str, skill_id: str) -> bool | None:
        """``None`` when unknown, ``False`` when it still has versions, ``True`` once deleted."""
        async with self._db.write() as session:
            row = await session.get(SkillRow, skill_id)
            if row is None or row.workspace_id != workspace_id:
                return None
            if await self._latest(session, skill_id) is not None:
                return False
            await session.delete(row)
            return True

    async def version(self, skill_id: str, version: str) -> SkillVersionRecord | None:
        async with self._db.read() as session:
            row = await session.get(SkillVersionRow, (skill_id, version))
        return _version(row) if row else None

    async def versions(
        self, skill_id: str, limit: int, after: str | None
    ) -> tuple[list[SkillVersionRecord], bool]:
        query = select(SkillVersionRow).where(SkillVersionRow.skill_id == skill_id)
        if after is not None:
            query = query.where(SkillVersionRow.version < after)
        query = query.order_by(SkillVersionRow.version.desc()).limit(limit + 1)
        async with self._db.read() as session:
            rows = list((await session.execute(query)).scalars())
        return [_version(r) for r in rows[:limit]], len(rows) > limit

    async def delete_version(self, skill_id: str, version: str) -> SkillVersionRecord | None:
        async with self._db.write() as session:
            row = await session.get(SkillVersionRow, (skill_id, version))
            if row is None:
                return None
            record = _version(row)
            await session.execute(
                delete(SkillVersionRow).where(
                    SkillVersionRow.skill_id == skill_id, SkillVersionRow.version == version
                )
            )
            return record

    @staticmethod
    async def _latest(session: AsyncSession, skill_id: str) -> str | None:
        value = (
            await session.execute(
                select(func.max(SkillVersionRow.version)).where(SkillVersionRow.skill_id == skill_id)
            )
        ).scalar_one()
        return str(value) if value is not None else None

    @staticmethod
    def _skill(row: SkillRow, latest: str | None) -> SkillRecord:
        return SkillRecord(
            row.id,
            row.organization_id,
            row.workspace_id,
            row.name,
            row.display_name,
            aware(row.created_at),
            aware(row.updated_at),
            latest,
        )
