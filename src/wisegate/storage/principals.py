"""Repositories of the Admin API's service accounts (and their workspace memberships) and of spend
limit increase requests (migration 0009)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from wisegate.records.principals import ServiceAccount, ServiceAccountMember, SpendLimitRequest
from wisegate.storage.db import Database
from wisegate.storage.repos import aware
from wisegate.storage.tables import ServiceAccountMemberRow, ServiceAccountRow, SpendLimitRequestRow


def _account(row: ServiceAccountRow) -> ServiceAccount:
    return ServiceAccount(
        row.id,
        row.organization_id,
        row.name,
        row.description,
        row.organization_role,
        aware(row.created_at),
        row.created_by_actor_id,
        aware(row.updated_at),
        row.updated_by_actor_id,
        aware(row.archived_at) if row.archived_at else None,
        row.archived_by_actor_id,
    )


def _member(row: ServiceAccountMemberRow) -> ServiceAccountMember:
    return ServiceAccountMember(
        row.workspace_id,
        row.service_account_id,
        row.workspace_role,
        aware(row.created_at),
        row.created_by_actor_id,
    )


def _request(row: SpendLimitRequestRow) -> SpendLimitRequest:
    return SpendLimitRequest(
        row.id,
        row.organization_id,
        row.workspace_id,
        row.user_id,
        row.requested_pico,
        row.reason,
        row.status,
        aware(row.created_at),
        aware(row.resolved_at) if row.resolved_at else None,
        row.resolved_by_type,
        row.resolved_by_id,
        row.approved_pico,
    )


class ServiceAccountRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, account: ServiceAccount) -> None:
        async with self._db.write() as session:
            session.add(
                ServiceAccountRow(
                    id=account.id,
                    organization_id=account.organization_id,
                    name=account.name,
                    description=account.description,
                    organization_role=account.organization_role,
                    created_at=account.created_at,
                    created_by_actor_id=account.created_by_actor_id,
                    updated_at=account.updated_at,
                    updated_by_actor_id=account.updated_by_actor_id,
                )
            )

    async def get(self, account_id: str) -> ServiceAccount | None:
        async with self._db.read() as session:
            row = await session.get(ServiceAccountRow, account_id)
        return _account(row) if row else None

    async def by_name(self, organization_id: str, name: str) -> ServiceAccount | None:
        async with self._db.read() as session:
            row = (
                await session.execute(
                    select(ServiceAccountRow).where(
                        ServiceAccountRow.organization_id == organization_id, ServiceAccountRow.name == name
                    )
                )
            ).scalar_one_or_none()
        return _account(row) if row else None

    async def list_accounts(self, organization_id: str) -> list[ServiceAccount]:
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(ServiceAccountRow).where(ServiceAccountRow.organization_id == organization_id)
                )
            ).scalars()
            return [_account(row) for row in rows]

    async def update(self, account_id: str, **values: object) -> ServiceAccount | None:
        """Set columns (``description``, ``organization_role``, ``updated_*``, ``archived_*``)."""
        async with self._db.write() as session:
            row = await session.get(ServiceAccountRow, account_id)
            if row is None:
                return None
            for name, value in values.items():
                setattr(row, name, value)
            return _account(row)

    async def members(
        self, *, workspace_id: str | None = None, service_account_id: str | None = None
    ) -> list[ServiceAccountMember]:
        query = select(ServiceAccountMemberRow)
        if workspace_id is not None:
            query = query.where(ServiceAccountMemberRow.workspace_id == workspace_id)
        if service_account_id is not None:
            query = query.where(ServiceAccountMemberRow.service_account_id == service_account_id)
        async with self._db.read() as session:
            return [_member(row) for row in (await session.execute(query)).scalars()]

    async def put_member(self, member: ServiceAccountMember) -> ServiceAccountMember:
        """Add a membership, or replace the role of an existing one."""
        async with self._db.write() as session:
            row = await session.get(ServiceAccountMemberRow, (member.workspace_id, member.service_account_id))
            if row is None:
                row = ServiceAccountMemberRow(
                    workspace_id=member.workspace_id,
                    service_account_id=member.service_account_id,
                    workspace_role=member.workspace_role,
                    created_at=member.created_at,
                    created_by_actor_id=member.created_by_actor_id,
                )
                session.add(row)
            else:
                row.workspace_role = member.workspace_role
            return _member(row)

    async def remove_member(self, workspace_id: str, service_account_id: str) -> bool:
        async with self._db.write() as session:
            row = await session.get(ServiceAccountMemberRow, (workspace_id, service_account_id))
            if row is None:
                return False
            await session.delete(row)
            return True


class SpendRequestRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, request: SpendLimitRequest) -> None:
        async with self._db.write() as session:
            session.add(
                SpendLimitRequestRow(
                    id=request.id,
                    organization_id=request.organization_id,
                    workspace_id=request.workspace_id,
                    user_id=request.user_id,
                    requested_pico=request.requested_pico,
                    reason=request.reason,
                    status=request.status,
                    created_at=request.created_at,
                )
            )

    async def get(self, request_id: str) -> SpendLimitRequest | None:
        async with self._db.read() as session:
            row = await session.get(SpendLimitRequestRow, request_id)
        return _request(row) if row else None

    async def list_requests(self, organization_id: str) -> list[SpendLimitRequest]:
        """Newest first."""
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(SpendLimitRequestRow)
                    .where(SpendLimitRequestRow.organization_id == organization_id)
                    .order_by(SpendLimitRequestRow.created_at.desc(), SpendLimitRequestRow.id.desc())
                )
            ).scalars()
            return [_request(row) for row in rows]

    async def resolve(
        self,
        request_id: str,
        status: str,
        at: datetime,
        by_type: str,
        by_id: str,
        approved_pico: int | None = None,
    ) -> SpendLimitRequest | None:
        """Move a pending request to ``status``; None when it is no longer pending."""
        async with self._db.write() as session:
            row = await session.get(SpendLimitRequestRow, request_id, with_for_update=True)
            if row is None or row.status != "pending":
                return None
            row.status = status
            row.resolved_at = at
            row.resolved_by_type = by_type
            row.resolved_by_id = by_id
            row.approved_pico = approved_pico
            return _request(row)
