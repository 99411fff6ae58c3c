"""Billing state: tier pins, prepaid credits, monthly spend counters, reservations and the settlement.

Every check-and-take is one conditional ``UPDATE`` (atomic on SQLite and PostgreSQL alike, across
processes), and a settlement — release the reservation, debit the actual cost, insert the usage
record — happens inside one transaction. Concurrent settlements share a transaction (group commit).

Settlements go through this repository's :class:`~wisegate.storage.ledger.Ledger` (``settle``,
``drain``, ``recover``, ``stop``). With a :class:`LedgerJournal` (the default), ``settle`` returns once
the settlement is a line in this process's journal — durable against the process being killed — and a
background task commits journaled settlements in groups; after a crash the next start replays them.
Without one, ``settle`` returns once the transaction holding its settlement has committed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from wisegate.protocol.bounds import MAX_BALANCE_PICO
from wisegate.records.billing import BillingAccount, Reservation, WorkspaceLimits, billing_period
from wisegate.storage.db import Database
from wisegate.storage.ledger import Ledger, LedgerJournal, Queued
from wisegate.storage.repos import aware
from wisegate.storage.tables import (
    BillingAccountRow,
    CreditGrantRow,
    SpendPeriodRow,
    SpendReservationRow,
    UsageRecordRow,
    WorkspaceLimitRow,
)


class SpendRefused(Exception):
    """A reservation did not fit: ``scope`` is ``organization``, ``workspace`` or ``credit``."""

    def __init__(self, scope: str, committed_pico: int) -> None:
        super().__init__(scope)
        self.scope = scope
        self.committed_pico = committed_pico


class BillingRepo:
    def __init__(self, db: Database, journal: LedgerJournal | None = None) -> None:
        self._db = db
        # Rows known to exist (they are created once and never deleted): no upsert per settlement.
        self._have_accounts: set[str] = set()
        self._have_periods: set[tuple[str, str]] = set()
        self.ledger = Ledger(self._commit_group, self._recorded, journal)
        self.settle = self.ledger.settle
        self.drain = self.ledger.drain
        self.recover = self.ledger.recover
        self.stop = self.ledger.stop
        self.close = self.ledger.close

    @property
    def uncommitted(self) -> int:
        """Settlements handed in and not yet committed (the journal's lag)."""
        return self.ledger.uncommitted

    def _upsert(self, table: Any) -> Any:
        return (pg_insert if not self._db.is_sqlite else sqlite_insert)(table)

    async def account(self, organization_id: str) -> BillingAccount:
        async with self._db.read() as session:
            row = await session.get(BillingAccountRow, organization_id)
        if row is None:
            return BillingAccount(organization_id)
        return BillingAccount(
            row.organization_id,
            row.tier,
            row.credit_balance_pico,
            row.credits_purchased_pico,
            row.spent_pico,
            row.spend_limit_pico,
        )

    async def workspace_limits(self, workspace_id: str) -> WorkspaceLimits:
        async with self._db.read() as session:
            row = await session.get(WorkspaceLimitRow, workspace_id)
        if row is None:
            return WorkspaceLimits(workspace_id)
        rates = json.loads(row.rate_limits) if row.rate_limits else None
        return WorkspaceLimits(workspace_id, row.spend_limit_pico, rates)

    async def period_spend(self, scope_id: str, period: str) -> tuple[int, int]:
        """``(spent, reserved)`` picodollars of an organization or workspace in a month."""
        await self.drain()  # this process's settlements first
        async with self._db.read() as session:
            row = await session.get(SpendPeriodRow, (scope_id, period))
        return (row.spent_pico, row.reserved_pico) if row else (0, 0)

    async def _ensure_account(self, session: AsyncSession, organization_id: str) -> None:
        if organization_id in self._have_accounts:
            return
        await (await session.connection()).execute(
            self._upsert(BillingAccountRow)
            .values(
                organization_id=organization_id,
                credits_purchased_pico=0,
                spent_pico=0,
                updated_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing()
        )
        session.info.setdefault("after_commit", []).append(lambda: self._have_accounts.add(organization_id))

    async def _ensure_periods(self, session: AsyncSession, scopes: list[str], period: str) -> None:
        for scope in scopes:
            if (scope, period) in self._have_periods:
                continue
            await (await session.connection()).execute(
                self._upsert(SpendPeriodRow)
                .values(scope_id=scope, period=period, spent_pico=0, reserved_pico=0)
                .on_conflict_do_nothing()
            )
            session.info.setdefault("after_commit", []).append(
                lambda scope=scope: self._have_periods.add((scope, period))
            )

    async def add_credits(self, organization_id: str, amount_pico: int, note: str) -> BillingAccount | None:
        """Top up the prepaid balance, or correct it (negative); a first top-up turns the organization
        prepaid. ``None``, and nothing changed, when the new balance would leave its range
        (``protocol/bounds.py``): a top-up may not carry it past ``MAX_BALANCE_PICO``, a correction
        may not carry it below zero — checked in the same statement that adds. The purchased total
        (which only picks the tier) stops growing at ``MAX_BALANCE_PICO`` rather than refuse a top-up."""
        a = BillingAccountRow
        balance = func.coalesce(a.credit_balance_pico, 0) + amount_pico
        in_range = balance <= MAX_BALANCE_PICO if amount_pico >= 0 else balance >= 0
        purchased = case(
            (a.credits_purchased_pico > MAX_BALANCE_PICO - max(amount_pico, 0), MAX_BALANCE_PICO),
            else_=a.credits_purchased_pico + max(amount_pico, 0),
        )
        async with self._db.write() as session:
            await self._ensure_account(session, organization_id)
            added = await (await session.connection()).execute(
                update(a)
                .where(a.organization_id == organization_id, in_range)
                .values(
                    credit_balance_pico=balance,
                    credits_purchased_pico=purchased,
                    updated_at=datetime.now(UTC),
                )
            )
            if not getattr(added, "rowcount", 0):
                return None
            await (await session.connection()).execute(
                insert(CreditGrantRow).values(
                    organization_id=organization_id,
                    amount_pico=amount_pico,
                    note=note,
                    created_at=datetime.now(UTC),
                )
            )
        return await self.account(organization_id)

    async def set_account(self, organization_id: str, **values: Any) -> BillingAccount:
        """Set ``tier`` and/or ``spend_limit_pico`` (None clears)."""
        async with self._db.write() as session:
            await self._ensure_account(session, organization_id)
            await (await session.connection()).execute(
                update(BillingAccountRow)
                .where(BillingAccountRow.organization_id == organization_id)
                .values(updated_at=datetime.now(UTC), **values)
            )
        return await self.account(organization_id)

    async def set_workspace_limits(
        self,
        workspace_id: str,
        organization_id: str,
        spend_limit_pico: int | None,
        rate_limits: dict[str, dict[str, int]] | None,
    ) -> WorkspaceLimits:
        values = {
            "organization_id": organization_id,
            "spend_limit_pico": spend_limit_pico,
            "rate_limits": json.dumps(rate_limits) if rate_limits else None,
            "updated_at": datetime.now(UTC),
        }
        async with self._db.write() as session:
            await (await session.connection()).execute(
                self._upsert(WorkspaceLimitRow)
                .values(workspace_id=workspace_id, **values)
                .on_conflict_do_update(index_elements=["workspace_id"], set_=values)
            )
        return await self.workspace_limits(workspace_id)

    async def reserve(
        self,
        reservation: Reservation,
        organization_cap: int | None,
        workspace_cap: int | None,
    ) -> None:
        """Hold ``amount_pico`` against both monthly caps and (``credit_pico``) the credit balance,
        all or nothing; :class:`SpendRefused` names the first that did not fit."""
        async with self._db.write() as session:
            await self._hold(session, reservation, organization_cap, workspace_cap)

    async def _hold(
        self,
        session: AsyncSession,
        r: Reservation,
        organization_cap: int | None,
        workspace_cap: int | None,
    ) -> None:
        conn = await session.connection()
        await self._ensure_periods(session, [r.organization_id, r.workspace_id], r.period)
        for scope, scope_id, cap in (
            ("organization", r.organization_id, organization_cap),
            ("workspace", r.workspace_id, workspace_cap),
        ):
            query = (
                update(SpendPeriodRow)
                .where(SpendPeriodRow.scope_id == scope_id, SpendPeriodRow.period == r.period)
                .values(reserved_pico=SpendPeriodRow.reserved_pico + r.amount_pico)
            )
            if cap is not None:
                query = query.where(
                    SpendPeriodRow.spent_pico + SpendPeriodRow.reserved_pico + r.amount_pico <= cap
                )
            if (await conn.execute(query)).rowcount != 1:
                spent, reserved = await _period(session, scope_id, r.period)
                raise SpendRefused(scope, spent + reserved)
        if r.credit_pico:
            taken = await conn.execute(
                update(BillingAccountRow)
                .where(
                    BillingAccountRow.organization_id == r.organization_id,
                    BillingAccountRow.credit_balance_pico >= r.credit_pico,
                )
                .values(credit_balance_pico=BillingAccountRow.credit_balance_pico - r.credit_pico)
            )
            if taken.rowcount != 1:
                raise SpendRefused("credit", 0)
        await conn.execute(
            insert(SpendReservationRow).values(
                request_id=r.request_id,
                organization_id=r.organization_id,
                workspace_id=r.workspace_id,
                period=r.period,
                amount_pico=r.amount_pico,
                credit_pico=r.credit_pico,
                created_at=datetime.now(UTC),
            )
        )

    async def take_lease(
        self,
        lease: Reservation,
        request: Reservation,
        organization_cap: int | None,
        workspace_cap: int | None,
        minimum: int,
    ) -> int:
        """One transaction: read the headroom under both caps and the credit balance, and hold up to
        ``lease.amount_pico`` of it (an eighth of the headroom at most) as the lease row
        ``lease.request_id``; the amount held, or 0 when that would be under ``minimum`` — then
        ``request`` alone is held, exactly as :meth:`reserve` does. :class:`SpendRefused` when even
        ``request`` does not fit, or (rarely, on PostgreSQL) when another process took the headroom
        between the read and the hold: then :meth:`reserve` ``request``."""
        r = lease
        async with self._db.write() as session:
            await self._ensure_periods(session, [r.organization_id, r.workspace_id], r.period)
            headroom: list[int] = []
            for scope_id, cap in ((r.organization_id, organization_cap), (r.workspace_id, workspace_cap)):
                if cap is not None:
                    spent, reserved = await _period(session, scope_id, r.period)
                    headroom.append(cap - spent - reserved)
            if r.credit_pico:
                balance = await session.scalar(
                    select(BillingAccountRow.credit_balance_pico).where(
                        BillingAccountRow.organization_id == r.organization_id
                    )
                )
                headroom.append(int(balance or 0))
            size = min([r.amount_pico, *(h // 8 for h in headroom)])
            if size < minimum:
                await self._hold(session, request, organization_cap, workspace_cap)
                return 0
            held = Reservation(
                r.request_id,
                r.organization_id,
                r.workspace_id,
                r.period,
                size,
                size if r.credit_pico else 0,
                lease=True,
            )
            await self._hold(session, held, organization_cap, workspace_cap)
            return size

    async def renew_leases(self, lease_ids: list[str]) -> set[str]:
        """Mark leases as held by a live process (so the sweep leaves them); the ids still held."""
        if not lease_ids:
            return set()
        async with self._db.write() as session:
            result = await (await session.connection()).execute(
                update(SpendReservationRow)
                .where(SpendReservationRow.request_id.in_(lease_ids))
                .values(created_at=datetime.now(UTC))
                .returning(SpendReservationRow.request_id)
            )
            return {row[0] for row in result}

    async def _commit_group(self, group: Sequence[Queued]) -> None:
        async with self._db.write() as session:
            await self._settle_group(session, group)

    async def _recorded(self, request_ids: list[str]) -> set[str]:
        """Which of ``request_ids`` have a usage record."""
        present: set[str] = set()
        async with self._db.read() as session:
            for start in range(0, len(request_ids), 500):
                query = select(UsageRecordRow.request_id).where(
                    UsageRecordRow.request_id.in_(request_ids[start : start + 500])
                )
                present.update((await session.execute(query)).scalars())
        return present

    async def _settle_group(self, session: AsyncSession, group: Sequence[Queued]) -> None:
        """Settle ``group`` in the caller's transaction, with one statement per table and scope: the
        sums of a group are the same as settling each in turn."""
        conn = await session.connection()
        held = [q.reservation for q in group if q.reservation is not None and not q.reservation.lease]
        released: set[str] = set()
        if held:  # a reservation the sweep already released gives nothing back twice
            result = await conn.execute(
                delete(SpendReservationRow)
                .where(SpendReservationRow.request_id.in_([r.request_id for r in held]))
                .returning(SpendReservationRow.request_id)
            )
            released = {row[0] for row in result}
        leased = [q.reservation for q in group if q.reservation is not None and q.reservation.lease]
        if leased:
            released |= await self._shrink_leases(conn, leased)
        spent: Counter[tuple[str, str]] = Counter()
        unreserved: Counter[tuple[str, str]] = Counter()
        debit: Counter[str] = Counter()
        credit_back: Counter[str] = Counter()
        for item in group:
            record, reservation, period = item.record, item.reservation, item.period
            if reservation is not None:
                period = reservation.period
                if reservation.request_id in released:
                    unreserved[(reservation.organization_id, period)] += reservation.amount_pico
                    unreserved[(reservation.workspace_id, period)] += reservation.amount_pico
                    credit_back[reservation.organization_id] += reservation.credit_pico
            if record.cost_picousd:
                spent[(record.organization_id, period)] += record.cost_picousd
                spent[(record.workspace_id, period)] += record.cost_picousd
                debit[record.organization_id] += record.cost_picousd
        # Rows in the order reservations take them (organization, then workspace, then account), so
        # concurrent transactions on PostgreSQL never wait on each other in a cycle.
        organizations = {item.record.organization_id for item in group}
        scopes = sorted(spent.keys() | unreserved.keys(), key=lambda k: (k[0] not in organizations, k))
        # The rows the sums go to, created once per group (before: once per settlement in it, since a
        # row counts as known only once its transaction committed).
        for scope_id, period in scopes:
            if (scope_id, period) in spent:
                await self._ensure_periods(session, [scope_id], period)
        for organization_id in sorted(debit):
            await self._ensure_account(session, organization_id)
        for scope_id, period in scopes:
            await conn.execute(
                update(SpendPeriodRow)
                .where(SpendPeriodRow.scope_id == scope_id, SpendPeriodRow.period == period)
                .values(
                    spent_pico=SpendPeriodRow.spent_pico + spent[(scope_id, period)],
                    reserved_pico=SpendPeriodRow.reserved_pico - unreserved[(scope_id, period)],
                )
            )
        for organization_id in sorted(debit.keys() | {k for k, v in credit_back.items() if v}):
            await conn.execute(
                update(BillingAccountRow)
                .where(BillingAccountRow.organization_id == organization_id)
                .values(
                    spent_pico=BillingAccountRow.spent_pico + debit[organization_id],
                    credit_balance_pico=BillingAccountRow.credit_balance_pico
                    - debit[organization_id]
                    + credit_back[organization_id],
                )
            )
        await conn.execute(
            insert(UsageRecordRow),
            [{f.name: getattr(item.record, f.name) for f in fields(item.record)} for item in group],
        )

    async def _shrink_leases(self, conn: Any, parts: list[Reservation]) -> set[str]:
        """Take ``parts`` off their lease rows (summed per lease; a lease that reaches zero is
        deleted); the ids of the leases still held, whose parts must leave the counters too."""
        amounts: Counter[str] = Counter()
        credits: Counter[str] = Counter()
        for r in parts:
            amounts[r.request_id] += r.amount_pico
            credits[r.request_id] += r.credit_pico
        found: set[str] = set()
        emptied: list[str] = []
        for lease_id in sorted(amounts):
            row = (
                await conn.execute(
                    update(SpendReservationRow)
                    .where(SpendReservationRow.request_id == lease_id)
                    .values(
                        amount_pico=SpendReservationRow.amount_pico - amounts[lease_id],
                        credit_pico=SpendReservationRow.credit_pico - credits[lease_id],
                    )
                    .returning(SpendReservationRow.amount_pico)
                )
            ).first()
            if row is not None:  # else the sweep released the lease whole: nothing is given back twice
                found.add(lease_id)
                if row[0] <= 0:
                    emptied.append(lease_id)
        if emptied:
            await conn.execute(
                delete(SpendReservationRow).where(
                    SpendReservationRow.request_id.in_(emptied), SpendReservationRow.amount_pico <= 0
                )
            )
        return found

    async def _release(self, session: AsyncSession, r: Reservation) -> None:
        conn = await session.connection()
        if r.lease:
            if not await self._shrink_leases(conn, [r]):
                return
            amount, credit = r.amount_pico, r.credit_pico
        else:
            # What the row holds now (a lease shrinks as its requests settle), not what was read.
            gone = (
                await conn.execute(
                    delete(SpendReservationRow)
                    .where(SpendReservationRow.request_id == r.request_id)
                    .returning(SpendReservationRow.amount_pico, SpendReservationRow.credit_pico)
                )
            ).first()
            if gone is None:
                return  # already released by the sweep
            amount, credit = int(gone[0]), int(gone[1])
        for scope_id in (r.organization_id, r.workspace_id):
            await conn.execute(
                update(SpendPeriodRow)
                .where(SpendPeriodRow.scope_id == scope_id, SpendPeriodRow.period == r.period)
                .values(reserved_pico=SpendPeriodRow.reserved_pico - amount)
            )
        if credit:
            await conn.execute(
                update(BillingAccountRow)
                .where(BillingAccountRow.organization_id == r.organization_id)
                .values(credit_balance_pico=BillingAccountRow.credit_balance_pico + credit)
            )

    async def release(self, reservation: Reservation) -> None:
        """Give a reservation back without any cost (the request never ran); with ``lease`` set,
        give that much of the lease back."""
        async with self._db.write() as session:
            await self._release(session, reservation)

    async def release_stale(self, older_than: datetime) -> int:
        """Release reservations of requests that never settled, and leases no live process renews
        (their process died); how many."""
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(SpendReservationRow).where(SpendReservationRow.created_at < older_than)
                )
            ).scalars()
            stale = [
                Reservation(
                    r.request_id, r.organization_id, r.workspace_id, r.period, r.amount_pico, r.credit_pico
                )
                for r in rows
            ]
        for reservation in stale:
            await self.release(reservation)
        return len(stale)

    async def unsettle(self, request_id: str) -> None:
        """Undo a committed settlement in one transaction: delete its usage record, take its cost back
        out of the monthly counters and return it to the credit balance (a reservation it released stays
        released). Rows in the settlement's order: organization, workspace, account."""
        async with self._db.write() as session:
            u = UsageRecordRow
            gone = (
                await session.execute(
                    delete(u)
                    .where(u.request_id == request_id)
                    .returning(u.organization_id, u.workspace_id, u.cost_picousd, u.created_at)
                )
            ).first()
            if gone is None or not gone.cost_picousd:
                return
            cost, period = gone.cost_picousd, billing_period(aware(gone.created_at))
            for scope_id in (gone.organization_id, gone.workspace_id):
                await session.execute(
                    update(SpendPeriodRow)
                    .where(SpendPeriodRow.scope_id == scope_id, SpendPeriodRow.period == period)
                    .values(spent_pico=SpendPeriodRow.spent_pico - cost)
                )
            await session.execute(
                update(BillingAccountRow)
                .where(BillingAccountRow.organization_id == gone.organization_id)
                .values(
                    spent_pico=BillingAccountRow.spent_pico - cost,
                    credit_balance_pico=BillingAccountRow.credit_balance_pico + cost,  # NULL stays NULL
                )
            )


async def _period(session: AsyncSession, scope_id: str, period: str) -> tuple[int, int]:
    row = (
        await session.execute(
            select(SpendPeriodRow.spent_pico, SpendPeriodRow.reserved_pico).where(
                SpendPeriodRow.scope_id == scope_id, SpendPeriodRow.period == period
            )
        )
    ).one()
    return int(row[0]), int(row[1])
