"""Console accounts: users' credentials, server-side sessions, sign-in throttles and the audit record."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, select, update

from wisegate.records.accounts import AuditEvent, ConsoleSession, Throttle
from wisegate.records.directory import User
from wisegate.storage.db import Database
from wisegate.storage.directory import user_from_row
from wisegate.storage.repos import aware
from wisegate.storage.tables import AuditEventRow, ConsoleSessionRow, SignInThrottleRow, UserRow


def _session(row: ConsoleSessionRow) -> ConsoleSession:
    return ConsoleSession(
        row.id,
        row.organization_id,
        row.user_id,
        row.admin_key_id,
        aware(row.created_at),
        aware(row.last_seen_at),
        aware(row.expires_at),
        aware(row.ended_at) if row.ended_at else None,
        row.ip,
        row.user_agent,
    )


def _audit(row: AuditEventRow) -> AuditEvent:
    return AuditEvent(
        row.organization_id,
        aware(row.at),
        row.actor_type,
        row.actor_id,
        row.action,
        row.target,
        row.ip,
        json.loads(row.detail) if row.detail else None,
        row.id,
    )


def _throttle(row: SignInThrottleRow) -> Throttle:
    blocked = aware(row.blocked_until) if row.blocked_until else None
    return Throttle(row.subject, row.failures, aware(row.last_failure_at), blocked)


class AccountRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def credentials(self, organization_id: str, email: str) -> tuple[User, str | None] | None:
        """The user of that e-mail and their password hash (None: no password set)."""
        async with self._db.read() as session:
            row = (
                await session.execute(
                    select(UserRow).where(UserRow.organization_id == organization_id, UserRow.email == email)
                )
            ).scalar_one_or_none()
        return (user_from_row(row), row.password_hash) if row else None

    async def password_hash(self, user_id: str) -> str | None:
        async with self._db.read() as session:
            row = await session.get(UserRow, user_id)
        return row.password_hash if row else None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        async with self._db.write() as session:
            await session.execute(
                update(UserRow).where(UserRow.id == user_id).values(password_hash=password_hash)
            )

    async def user_by_sso_subject(self, organization_id: str, subject: str) -> User | None:
        async with self._db.read() as session:
            row = (
                await session.execute(
                    select(UserRow).where(
                        UserRow.organization_id == organization_id, UserRow.sso_subject == subject
                    )
                )
            ).scalar_one_or_none()
        return user_from_row(row) if row else None

    async def link_sso_subject(self, user_id: str, subject: str) -> bool:
        """Link a user to a provider subject unless they are linked already (to it: True; to another
        subject: False, nothing changed) — one statement, so two first sign-ins cannot both link."""
        async with self._db.write() as session:
            result = await session.execute(
                update(UserRow)
                .where(UserRow.id == user_id, UserRow.sso_subject.is_(None))
                .values(sso_subject=subject)
            )
            if getattr(result, "rowcount", 0) == 1:
                return True
            row = await session.get(UserRow, user_id)
            return row is not None and row.sso_subject == subject

    async def set_name(self, user_id: str, name: str) -> User | None:
        async with self._db.write() as session:
            row = await session.get(UserRow, user_id)
            if row is None:
                return None
            row.name = name
            return user_from_row(row)

    async def add_user(self, user: User, *, sso_subject: str | None = None) -> None:
        async with self._db.write() as session:
            session.add(
                UserRow(
                    id=user.id,
                    organization_id=user.organization_id,
                    email=user.email,
                    name=user.name,
                    role=user.role,
                    added_at=user.added_at,
                    sso_subject=sso_subject,
                )
            )

    async def add_session(self, record: ConsoleSession, *, replaces: str | None = None) -> None:
        """Store a new session; ``replaces`` (the id the browser held before) ends in the same write."""
        async with self._db.write() as session:
            if replaces:
                await session.execute(
                    update(ConsoleSessionRow)
                    .where(ConsoleSessionRow.id == replaces, ConsoleSessionRow.ended_at.is_(None))
                    .values(ended_at=record.created_at)
                )
            session.add(
                ConsoleSessionRow(
                    id=record.id,
                    organization_id=record.organization_id,
                    user_id=record.user_id,
                    admin_key_id=record.admin_key_id,
                    created_at=record.created_at,
                    last_seen_at=record.last_seen_at,
                    expires_at=record.expires_at,
                    ended_at=None,
                    ip=record.ip[:64],
                    user_agent=record.user_agent[:256],
                )
            )

    async def get_session(self, session_id: str) -> ConsoleSession | None:
        async with self._db.read() as session:
            row = await session.get(ConsoleSessionRow, session_id)
        return _session(row) if row else None

    async def touch_session(self, session_id: str, at: datetime) -> None:
        async with self._db.write() as session:
            await session.execute(
                update(ConsoleSessionRow).where(ConsoleSessionRow.id == session_id).values(last_seen_at=at)
            )

    async def end_sessions(
        self,
        at: datetime,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        admin_key_id: str | None = None,
        keep: str | None = None,
    ) -> int:
        """End the open sessions chosen by id, user or admin key (except ``keep``); how many ended."""
        where: list[ColumnElement[bool]] = [ConsoleSessionRow.ended_at.is_(None)]
        if session_id is not None:
            where.append(ConsoleSessionRow.id == session_id)
        if user_id is not None:
            where.append(ConsoleSessionRow.user_id == user_id)
        if admin_key_id is not None:
            where.append(ConsoleSessionRow.admin_key_id == admin_key_id)
        if keep is not None:
            where.append(ConsoleSessionRow.id != keep)
        assert len(where) > 1 + (keep is not None), "choose the sessions to end"
        async with self._db.write() as session:
            result = await session.execute(update(ConsoleSessionRow).where(*where).values(ended_at=at))
            return int(getattr(result, "rowcount", 0) or 0)

    async def open_sessions(self, user_id: str, now: datetime) -> list[ConsoleSession]:
        """A user's sessions that have neither ended nor expired, newest first."""
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(ConsoleSessionRow)
                    .where(
                        ConsoleSessionRow.user_id == user_id,
                        ConsoleSessionRow.ended_at.is_(None),
                        ConsoleSessionRow.expires_at > now,
                    )
                    .order_by(ConsoleSessionRow.created_at.desc())
                    .limit(100)
                )
            ).scalars()
            return [_session(row) for row in rows]

    async def forget(self, sessions_before: datetime, throttles_before: datetime) -> int:
        """Delete sessions that expired or ended, and failure counts last touched, before the given
        times (housekeeping); how many rows went."""
        async with self._db.write() as session:
            ended = await session.execute(
                delete(ConsoleSessionRow).where(
                    (ConsoleSessionRow.expires_at < sessions_before)
                    | (ConsoleSessionRow.ended_at < sessions_before)
                )
            )
            quiet = await session.execute(
                delete(SignInThrottleRow).where(
                    SignInThrottleRow.last_failure_at < throttles_before,
                    (SignInThrottleRow.blocked_until.is_(None))
                    | (SignInThrottleRow.blocked_until < throttles_before),
                )
            )
            return sum(int(getattr(r, "rowcount", 0) or 0) for r in (ended, quiet))

    async def throttles(self, subjects: list[str]) -> list[Throttle]:
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(SignInThrottleRow).where(SignInThrottleRow.subject.in_(subjects))
                )
            ).scalars()
            return [_throttle(row) for row in rows]

    async def record_failure(
        self,
        subject: str,
        at: datetime,
        *,
        reset_before: datetime,
        free: int,
        base_seconds: float,
        cap: float,
    ) -> Throttle:
        """Count a failed sign-in of ``subject``: from the ``free``-th failure on, block for
        ``base_seconds`` doubled per further failure (at most ``cap``). A count last touched before
        ``reset_before`` starts again."""
        async with self._db.write() as session:
            row = await session.get(SignInThrottleRow, subject, with_for_update=True)
            if row is None:
                row = SignInThrottleRow(subject=subject, failures=0, last_failure_at=at, blocked_until=None)
                session.add(row)
            elif aware(row.last_failure_at) < reset_before:
                row.failures = 0
            row.failures += 1
            row.last_failure_at = at
            over = (
                row.failures - free
            )  # the free-th failure blocks for base_seconds, each next one doubles it
            row.blocked_until = (
                at + timedelta(seconds=min(cap, base_seconds * 2**over)) if over >= 0 else None
            )
            return _throttle(row)

    async def clear_throttle(self, subject: str) -> None:
        async with self._db.write() as session:
            await session.execute(delete(SignInThrottleRow).where(SignInThrottleRow.subject == subject))

    async def add_audit(self, event: AuditEvent) -> None:
        async with self._db.write() as session:
            session.add(
                AuditEventRow(
                    organization_id=event.organization_id,
                    at=event.at,
                    actor_type=event.actor_type,
                    actor_id=event.actor_id,
                    action=event.action,
                    target=event.target[:320] if event.target else None,
                    ip=event.ip[:64] if event.ip else None,
                    detail=json.dumps(event.detail) if event.detail else None,
                )
            )

    async def audit(
        self, organization_id: str, *, actor_id: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """The newest events of the organization (or of one actor), newest first."""
        query = select(AuditEventRow).where(AuditEventRow.organization_id == organization_id)
        if actor_id is not None:
            query = query.where(AuditEventRow.actor_id == actor_id)
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    query.order_by(AuditEventRow.at.desc(), AuditEventRow.id.desc()).limit(limit)
                )
            ).scalars()
            return [_audit(row) for row in rows]
