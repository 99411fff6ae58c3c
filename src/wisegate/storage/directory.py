"""Repositories of the Admin API's directory: workspace settings, users, invites, workspace members."""

from __future__ import annotations

import json

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from wisegate.records.directory import Invite, User, WorkspaceMember, WorkspaceSettings
from wisegate.storage.db import Database
from wisegate.storage.repos import aware
from wisegate.storage.tables import InviteRow, UserRow, WorkspaceMemberRow, WorkspaceRow, WorkspaceSettingsRow


def _settings(row: WorkspaceSettingsRow) -> WorkspaceSettings:
    allowed = tuple(json.loads(row.allowed_models)) if row.allowed_models is not None else None
    return WorkspaceSettings(row.workspace_id, row.display_color, allowed)


def user_from_row(row: UserRow) -> User:
    return User(row.id, row.organization_id, row.email, row.name, row.role, aware(row.added_at))


async def _last_workspace_admin(session: AsyncSession, row: WorkspaceMemberRow) -> bool:
    """Whether ``row`` is its workspace's only ``workspace_admin`` member. The workspace's admins are
    locked (PostgreSQL; SQLite has one writer): two of them stepping down at once cannot both succeed."""
    if row.workspace_role != "workspace_admin":
        return False
    admins = (
        await session.execute(
            select(WorkspaceMemberRow.user_id)
            .where(
                WorkspaceMemberRow.workspace_id == row.workspace_id,
                WorkspaceMemberRow.workspace_role == "workspace_admin",
            )
            .with_for_update()
        )
    ).all()
    return len(admins) <= 1


def _invite(row: InviteRow) -> Invite:
    accepted = aware(row.accepted_at) if row.accepted_at else None
    grants = tuple((str(w), str(r)) for w, r in json.loads(row.workspace_grants or "[]"))
    return Invite(
        row.id,
        row.organization_id,
        row.email,
        row.role,
        row.status,
        aware(row.invited_at),
        aware(row.expires_at),
        accepted,
        grants,
        row.token_nonce,
    )


def _member(row: WorkspaceMemberRow) -> WorkspaceMember:
    return WorkspaceMember(row.workspace_id, row.user_id, row.workspace_role, aware(row.added_at))


class DirectoryRepo:
    """Workspace settings, users, invites and workspace members."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def workspace_settings(self, workspace_id: str) -> WorkspaceSettings | None:
        async with self._db.read() as session:
            row = await session.get(WorkspaceSettingsRow, workspace_id)
        return _settings(row) if row else None

    async def all_workspace_settings(self, workspace_ids: list[str]) -> dict[str, WorkspaceSettings]:
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(WorkspaceSettingsRow).where(WorkspaceSettingsRow.workspace_id.in_(workspace_ids))
                )
            ).scalars()
            return {row.workspace_id: _settings(row) for row in rows}

    async def save_workspace_settings(self, settings: WorkspaceSettings) -> None:
        allowed = json.dumps(list(settings.allowed_models)) if settings.allowed_models is not None else None
        async with self._db.write() as session:
            row = await session.get(WorkspaceSettingsRow, settings.workspace_id)
            if row is None:
                session.add(
                    WorkspaceSettingsRow(
                        workspace_id=settings.workspace_id,
                        display_color=settings.display_color,
                        allowed_models=allowed,
                    )
                )
            else:
                row.display_color = settings.display_color
                row.allowed_models = allowed

    async def list_users(self, organization_id: str) -> list[User]:
        async with self._db.read() as session:
            rows = (
                await session.execute(select(UserRow).where(UserRow.organization_id == organization_id))
            ).scalars()
            return [user_from_row(row) for row in rows]

    async def get_user(self, user_id: str) -> User | None:
        async with self._db.read() as session:
            row = await session.get(UserRow, user_id)
        return user_from_row(row) if row else None

    async def user_by_email(self, organization_id: str, email: str) -> User | None:
        async with self._db.read() as session:
            row = (
                await session.execute(
                    select(UserRow).where(UserRow.organization_id == organization_id, UserRow.email == email)
                )
            ).scalar_one_or_none()
        return user_from_row(row) if row else None

    async def set_user_role(self, user_id: str, role: str) -> User | None:
        async with self._db.write() as session:
            row = await session.get(UserRow, user_id)
            if row is None:
                return None
            row.role = role
            return user_from_row(row)

    async def change_role(self, user_id: str, role: str) -> tuple[User, str] | str | None:
        """Set a user's organization role, in one transaction with the check that their organization
        keeps an admin: (the user as now, their role before); ``"last_admin"`` (nothing changed) when
        they are its only admin and ``role`` is another; None for an unknown user."""
        async with self._db.write() as session:
            row = await session.get(UserRow, user_id, with_for_update=True)
            if row is None:
                return None
            previous = row.role
            if previous == "admin" and role != "admin":
                # Lock the organization's admins (PostgreSQL; SQLite has one writer): two admins demoting
                # each other at once cannot both succeed.
                admins = (
                    await session.execute(
                        select(UserRow.id)
                        .where(UserRow.organization_id == row.organization_id, UserRow.role == "admin")
                        .with_for_update()
                    )
                ).all()
                if len(admins) <= 1:
                    return "last_admin"
            row.role = role
            return user_from_row(row), previous

    async def remove_user(self, user_id: str) -> bool | str:
        """Delete a user and their workspace memberships, in one transaction with the check that each
        workspace keeps a workspace admin (as ``remove_member`` does): True; False for no such user;
        the id of a live workspace whose only workspace admin they are (nothing changed) — an archived
        workspace takes no new members, so it does not hold a leaver back."""
        async with self._db.write() as session:
            row = await session.get(UserRow, user_id)
            if row is None:
                return False
            administered = (
                await session.execute(
                    select(WorkspaceMemberRow)
                    .join(WorkspaceRow, WorkspaceRow.id == WorkspaceMemberRow.workspace_id)
                    .where(
                        WorkspaceMemberRow.user_id == user_id,
                        WorkspaceMemberRow.workspace_role == "workspace_admin",
                        WorkspaceRow.archived_at.is_(None),
                    )
                    .order_by(WorkspaceMemberRow.workspace_id)
                )
            ).scalars()
            for member in administered:
                if await _last_workspace_admin(session, member):
                    return member.workspace_id
            await session.execute(delete(WorkspaceMemberRow).where(WorkspaceMemberRow.user_id == user_id))
            await session.delete(row)
            return True

    async def add_invite(self, invite: Invite, token_hash: str | None = None) -> None:
        async with self._db.write() as session:
            session.add(
                InviteRow(
                    id=invite.id,
                    organization_id=invite.organization_id,
                    email=invite.email,
                    role=invite.role,
                    status=invite.status,
                    invited_at=invite.invited_at,
                    expires_at=invite.expires_at,
                    accepted_at=invite.accepted_at,
                    token_hash=token_hash,
                    token_nonce=invite.token_nonce,
                    workspace_grants=json.dumps([list(g) for g in invite.workspace_grants]),
                )
            )

    async def invite_by_token_hash(self, token_hash: str) -> Invite | None:
        async with self._db.read() as session:
            row = (
                await session.execute(select(InviteRow).where(InviteRow.token_hash == token_hash))
            ).scalar_one_or_none()
        return _invite(row) if row else None

    async def set_invite_grants(self, invite_id: str, grants: tuple[tuple[str, str], ...]) -> None:
        async with self._db.write() as session:
            row = await session.get(InviteRow, invite_id)
            if row is not None:
                row.workspace_grants = json.dumps([list(g) for g in grants])

    async def set_invite_token(self, invite_id: str, nonce: str, token_hash: str) -> Invite | None:
        """A new accept link for the invite (the old one stops working)."""
        async with self._db.write() as session:
            row = await session.get(InviteRow, invite_id)
            if row is None:
                return None
            row.token_nonce = nonce
            row.token_hash = token_hash
            return _invite(row)

    async def list_invites(self, organization_id: str) -> list[Invite]:
        async with self._db.read() as session:
            rows = (
                await session.execute(select(InviteRow).where(InviteRow.organization_id == organization_id))
            ).scalars()
            return [_invite(row) for row in rows]

    async def get_invite(self, invite_id: str) -> Invite | None:
        async with self._db.read() as session:
            row = await session.get(InviteRow, invite_id)
        return _invite(row) if row else None

    async def set_invite_status(self, invite_id: str, status: str) -> Invite | None:
        async with self._db.write() as session:
            row = await session.get(InviteRow, invite_id)
            if row is None:
                return None
            row.status = status
            return _invite(row)

    async def accept_invite(
        self,
        invite_id: str,
        user: User,
        *,
        password_hash: str | None = None,
        sso_subject: str | None = None,
    ) -> Invite | None:
        """Mark a pending invite accepted, create its user and their workspace memberships, in one
        transaction; None when the invite is no longer pending (it was used meanwhile: single use)."""
        async with self._db.write() as session:
            row = await session.get(InviteRow, invite_id, with_for_update=True)
            if row is None or row.status != "pending":
                return None
            row.status = "accepted"
            row.accepted_at = user.added_at
            row.token_hash = None
            session.add(
                UserRow(
                    id=user.id,
                    organization_id=user.organization_id,
                    email=user.email,
                    name=user.name,
                    role=user.role,
                    added_at=user.added_at,
                    password_hash=password_hash,
                    sso_subject=sso_subject,
                )
            )
            await session.flush()
            for workspace_id, workspace_role in json.loads(row.workspace_grants or "[]"):
                session.add(
                    WorkspaceMemberRow(
                        workspace_id=workspace_id,
                        user_id=user.id,
                        workspace_role=workspace_role,
                        added_at=user.added_at,
                    )
                )
            return _invite(row)

    async def list_members(self, workspace_id: str) -> list[WorkspaceMember]:
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(WorkspaceMemberRow).where(WorkspaceMemberRow.workspace_id == workspace_id)
                )
            ).scalars()
            return [_member(row) for row in rows]

    async def memberships_of(self, user_id: str) -> list[WorkspaceMember]:
        async with self._db.read() as session:
            rows = (
                await session.execute(select(WorkspaceMemberRow).where(WorkspaceMemberRow.user_id == user_id))
            ).scalars()
            return [_member(row) for row in rows]

    async def get_member(self, workspace_id: str, user_id: str) -> WorkspaceMember | None:
        async with self._db.read() as session:
            row = await session.get(WorkspaceMemberRow, (workspace_id, user_id))
        return _member(row) if row else None

    async def add_member(self, member: WorkspaceMember) -> None:
        async with self._db.write() as session:
            session.add(
                WorkspaceMemberRow(
                    workspace_id=member.workspace_id,
                    user_id=member.user_id,
                    workspace_role=member.workspace_role,
                    added_at=member.added_at,
                )
            )

    async def set_member_role(
        self, workspace_id: str, user_id: str, role: str
    ) -> WorkspaceMember | str | None:
        """Set a member's workspace role, in one transaction with the check that the workspace keeps a
        workspace admin (as ``change_role`` keeps the organization's admin): the member as now;
        ``"last_admin"`` (nothing changed) when they are its only one and ``role`` is another; None for
        someone who is not a member."""
        async with self._db.write() as session:
            row = await session.get(WorkspaceMemberRow, (workspace_id, user_id), with_for_update=True)
            if row is None:
                return None
            if role != "workspace_admin" and await _last_workspace_admin(session, row):
                return "last_admin"
            row.workspace_role = role
            return _member(row)

    async def remove_member(self, workspace_id: str, user_id: str) -> bool | str:
        """Take a member out of a workspace: True; False for someone who is not a member;
        ``"last_admin"`` (nothing changed) when they are its only workspace admin."""
        async with self._db.write() as session:
            row = await session.get(WorkspaceMemberRow, (workspace_id, user_id), with_for_update=True)
            if row is None:
                return False
            if await _last_workspace_admin(session, row):
                return "last_admin"
            await session.delete(row)
            return True
