"""FileRepo and SkillRepo: metadata of stored files and skills (the bytes live in a blob store)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wisegate.records.files import FileRecord, Position, SkillRecord, SkillVersionRecord
from wisegate.storage.db import Database
from wisegate.storage.repos import aware
from wisegate.storage.tables import FileReservationRow, FileRow, OrganizationRow, SkillRow, SkillVersionRow


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


async def _used(
    session: AsyncSession, organization_id: str, stale_before: datetime | None, but: str | None = None
) -> int:
    """Bytes of the organization's files, plus its reservations renewed since ``stale_before`` (other
    than ``but``) when ``stale_before`` is given. One statement, so one snapshot: a commit that turns a
    reservation into a file between two reads would otherwise be counted in neither."""
    f, r = FileRow, FileReservationRow
    total: ColumnElement[int] = (
        select(func.coalesce(func.sum(f.size_bytes), 0))
        .where(f.organization_id == organization_id)
        .scalar_subquery()
    )
    if stale_before is not None:
        live = [r.organization_id == organization_id, r.updated_at >= stale_before]
        if but is not None:
            live.append(r.id != but)
        total = total + select(func.coalesce(func.sum(r.size_bytes), 0)).where(*live).scalar_subquery()
    return int((await session.execute(select(total))).scalar_one())


class FileRepo:
    """File metadata, always scoped by workspace."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: FileRecord, reservation_id: str | None = None) -> None:
        """Insert the file's row and, in the same transaction, drop the reservation its upload held."""
        async with self._db.write() as session:
            if reservation_id is not None:
                await session.execute(
                    delete(FileReservationRow).where(FileReservationRow.id == reservation_id)
                )
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

    async def used_bytes(self, organization_id: str, *, stale_before: datetime | None = None) -> int:
        """The organization's stored bytes, plus (with ``stale_before``) what live uploads hold."""
        async with self._db.read() as session:
            return await _used(session, organization_id, stale_before)

    async def reserve(
        self,
        reservation_id: str,
        organization_id: str,
        size_bytes: int,
        quota_bytes: int,
        now: datetime,
        stale_before: datetime,
    ) -> bool:
        """Hold ``size_bytes`` of the quota for one upload (replacing what it held) if the organization's
        files and every live reservation stay within ``quota_bytes``; ``False`` (nothing held) otherwise.

        Atomic per organization: on PostgreSQL the organization's row is locked for the transaction, on
        SQLite the single writer serialises. Reservations not renewed since ``stale_before`` (an upload
        whose process died) no longer count and are deleted.
        """
        r = FileReservationRow
        async with self._db.write() as session:
            await session.execute(
                select(OrganizationRow.id).where(OrganizationRow.id == organization_id).with_for_update()
            )
            await session.execute(
                delete(r).where(r.organization_id == organization_id, r.updated_at < stale_before)
            )
            used = await _used(session, organization_id, stale_before, but=reservation_id)
            if used + size_bytes > quota_bytes:
                return False
            held = await session.execute(
                update(r).where(r.id == reservation_id).values(size_bytes=size_bytes, updated_at=now)
            )
            if not getattr(held, "rowcount", 0):
                session.add(
                    r(
                        id=reservation_id,
                        organization_id=organization_id,
                        size_bytes=size_bytes,
                        updated_at=now,
                    )
                )
        return True

    async def release(self, reservation_id: str) -> None:
        """Give back what an upload held (it failed, or was abandoned)."""
        async with self._db.write() as session:
            await session.execute(delete(FileReservationRow).where(FileReservationRow.id == reservation_id))

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
