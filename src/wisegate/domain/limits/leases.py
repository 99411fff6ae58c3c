"""Spend leases: one database transaction holds spend for many requests of this process.

Holding a request's worst-case cost against the monthly caps and the credit balance used to be one
transaction per priced request. Instead, the process holds a *lease* — a spend reservation row named
``lease:<process>:<n>``, taken with the same conditional updates — and admits requests against it in
memory. Far from a cap a lease is generous (an eighth of the headroom, at most the larger of $1 and
256 worst cases); when that would be under four worst cases the request is held alone, exactly as
before, so near a cap nothing changes. What a lease holds in the database:

    row amount = lease taken − what settlements and returns have taken off it so far

At settlement the request's cost (at most its worst case) leaves the lease row and the periods'
reserved counters in the settlement's transaction; the rest of its worst case is room again. A closed
lease (exhausted, idle, caps changed, or on shutdown) gives its unused room back at once and each of
its requests still in flight gives back its whole worst case. Leases are renewed while the process
lives, so the sweep only releases those of dead processes; a lease whose renewal lags is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from wisegate.records.billing import Reservation
from wisegate.storage.billing import BillingRepo, SpendRefused

log = logging.getLogger("wisegate.limits")

_MIN_REQUESTS = 4  # a lease with room for fewer worst cases is not taken: the request is held alone
_MAX_REQUESTS = 256
_MAX_PICO = 10**12  # $1
_IDLE_SECONDS = 5.0  # an unused lease gives its room back
_PER_REQUEST_SECONDS = 1.0  # near a cap: hold per request for this long before trying a lease again

_Caps = tuple[int | None, int | None]


@dataclass
class _Lease:
    id: str
    organization_id: str
    workspace_id: str
    period: str
    credit: bool
    caps: _Caps
    amount: int  # what the row will hold once everything handed to the database so far is applied
    renewed: float  # monotonic time the last renewal (or the lease's transaction) started
    used: float
    held: int = 0  # worst cases of the requests in flight
    in_flight: int = 0
    open: bool = True

    def part(self, amount: int) -> Reservation:
        return Reservation(
            self.id,
            self.organization_id,
            self.workspace_id,
            self.period,
            amount,
            amount if self.credit else 0,
            lease=True,
        )


@dataclass
class _Scope:
    lease: _Lease | None = None
    acquiring: asyncio.Event | None = None
    returning: asyncio.Task[None] | None = None  # the last closed lease's unused room going back
    per_request_until: float = 0.0


class SpendLeases:
    """The leases of this process, one open lease per (organization, workspace, month).

    ``timeout_seconds`` is the sweep's: a lease is renewed every eighth of it (at most 30 s) and not
    used once its last renewal is older than half of it."""

    def __init__(
        self, billing: BillingRepo, timeout_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.billing = billing
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self.process = uuid.uuid4().hex  # lease ids are lease:<process>:<n>
        self._numbers = itertools.count(1)
        self._scopes: dict[tuple[str, str, str], _Scope] = {}
        self._leases: dict[str, _Lease] = {}  # every lease this process still answers for
        self._returns: set[asyncio.Task[None]] = set()
        self._keeper: asyncio.Task[None] | None = None

    async def reserve(
        self, request: Reservation, organization_cap: int | None, workspace_cap: int | None
    ) -> Reservation:
        """Hold ``request`` (its worst case) from this process's lease, taking a new lease when
        needed, or per request near a cap; what to hand to settlement. :class:`SpendRefused` as
        :meth:`BillingRepo.reserve`."""
        key = (request.organization_id, request.workspace_id, request.period)
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = _Scope()
        caps = (organization_cap, workspace_cap)
        for _ in range(3):
            held = self._from_lease(scope, request, caps)
            if held is not None:
                return held
            if scope.per_request_until > self.clock():
                break
            if scope.acquiring is None:
                if scope.returning is not None and not scope.returning.done():
                    # The headroom the next lease is sized from includes the last one's leftover.
                    await asyncio.wait([scope.returning])
                    continue
                return await self._acquire(scope, request, caps)
            await scope.acquiring.wait()  # one lease transaction at a time per scope
        await self.billing.reserve(request, organization_cap, workspace_cap)
        return request

    def _from_lease(self, scope: _Scope, request: Reservation, caps: _Caps) -> Reservation | None:
        lease = scope.lease
        if lease is None:
            return None
        now = self.clock()
        if (
            not lease.open
            or lease.caps != caps
            or lease.credit != (request.credit_pico > 0)
            or now - lease.renewed > self.timeout_seconds / 2
            or lease.amount - lease.held < request.amount_pico
        ):
            scope.returning = self._close(lease)
            scope.lease = None
            return None
        lease.held += request.amount_pico
        lease.in_flight += 1
        lease.used = now
        return lease.part(request.amount_pico)

    async def _acquire(self, scope: _Scope, request: Reservation, caps: _Caps) -> Reservation:
        scope.acquiring = asyncio.Event()
        worst = request.amount_pico
        want = max(_MAX_REQUESTS * worst, _MAX_PICO)
        lease_id = f"lease:{self.process}:{next(self._numbers)}"
        started = self.clock()
        try:
            offer = Reservation(
                lease_id, request.organization_id, request.workspace_id, request.period,
                want, want if request.credit_pico else 0, lease=True,
            )  # fmt: skip
            try:
                size = await self.billing.take_lease(offer, request, *caps, minimum=_MIN_REQUESTS * worst)
            except SpendRefused:
                # The request alone did not fit, or (PostgreSQL) another process took the headroom
                # between the lease's read and its hold: the per-request path decides.
                scope.per_request_until = self.clock() + _PER_REQUEST_SECONDS
                await self.billing.reserve(request, *caps)
                return request
            if size == 0:
                scope.per_request_until = self.clock() + _PER_REQUEST_SECONDS
                return request  # held alone in the same transaction
            lease = _Lease(
                lease_id, request.organization_id, request.workspace_id, request.period,
                request.credit_pico > 0, caps, size, started, self.clock(),
            )  # fmt: skip
            self._leases[lease_id] = lease
            if scope.lease is not None:
                scope.returning = self._close(scope.lease)
            scope.lease = lease
            lease.held, lease.in_flight = worst, 1
            return lease.part(worst)
        finally:
            scope.acquiring.set()
            scope.acquiring = None

    def settled(self, reservation: Reservation, cost: int) -> Reservation | None:
        """What a settlement of ``cost`` takes off the database's counters: the request's own
        reservation, or its part of a lease (None: nothing)."""
        if not reservation.lease:
            return reservation
        worst = reservation.amount_pico
        lease = self._leases.get(reservation.request_id)
        if lease is None:
            return reservation  # a lost lease: its row is gone, the settlement finds nothing to shrink
        lease.held -= worst
        lease.in_flight -= 1
        give = min(cost, worst) if lease.open else worst
        lease.amount -= give
        self._forget_if_done(lease)
        return lease.part(give) if give else None

    def released(self, reservation: Reservation) -> Reservation | None:
        """What a request that never ran gives back to the database (None: nothing)."""
        if not reservation.lease:
            return reservation
        return self.settled(reservation, 0)

    def _close(self, lease: _Lease) -> asyncio.Task[None] | None:
        """No more requests on ``lease``; its unused room goes back now (the task doing that)."""
        if not lease.open:
            return None
        lease.open = False
        give = lease.amount - lease.held
        lease.amount = lease.held
        self._forget_if_done(lease)
        return self._spawn(self.billing.release(lease.part(give))) if give > 0 else None

    def _forget_if_done(self, lease: _Lease) -> None:
        if not lease.open and lease.in_flight == 0:
            self._leases.pop(lease.id, None)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                await work
            except Exception:  # the sweep gives it back once the lease is no longer renewed
                log.exception("could not give back an unused spend lease")

        task = asyncio.get_running_loop().create_task(run())
        self._returns.add(task)
        task.add_done_callback(self._returns.discard)
        return task

    def start(self) -> None:
        """Renew this process's leases and give idle ones back, in the background."""
        self._keeper = asyncio.create_task(self._keep())

    async def _keep(self) -> None:
        renew_every = min(30.0, max(0.25, self.timeout_seconds / 8))
        renewed = self.clock()
        while True:
            await asyncio.sleep(min(1.0, renew_every))
            try:
                now = self.clock()
                self._close_idle(now)
                if now - renewed >= renew_every:
                    renewed = now
                    await self._renew()
            except Exception:
                log.exception("could not renew the spend leases")

    def _close_idle(self, now: float) -> None:
        for key, scope in list(self._scopes.items()):
            if scope.lease is not None and now - scope.lease.used > _IDLE_SECONDS:
                self._close(scope.lease)
                scope.lease = None
            if scope.lease is None and scope.acquiring is None and scope.per_request_until < now:
                del self._scopes[key]

    async def _renew(self) -> None:
        ids = list(self._leases)
        started = self.clock()
        alive = await self.billing.renew_leases(ids)
        for lease_id in ids:
            lease = self._leases.get(lease_id)
            if lease is None:
                continue
            if lease_id in alive:
                lease.renewed = started
            else:  # the sweep released it whole (this process stalled): never use or return it again
                lease.open = False
                lease.amount = lease.held
                self._forget_if_done(lease)

    async def close(self) -> None:
        """Give every lease's unused room back and wait for that to be written."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        for scope in self._scopes.values():
            if scope.lease is not None:
                self._close(scope.lease)
                scope.lease = None
        while self._returns:
            await asyncio.gather(*self._returns)


__all__ = ["SpendLeases"]
