"""Spend limits as the Admin API reports them, and the requests people make to raise them.

Wisegate's spend limits are monthly (UTC calendar months): the organization's (set by billing or an
admin), the tier's cap (``monthly_spend_cap_usd``) and each workspace's. ``effective`` reports, per
person, the organization-wide limit that applies to them and what their own API keys spent this month.

An **increase request** asks for a higher monthly spend limit of one workspace: a person who works there
asks in the console (Limits, or Account), giving an amount and a reason; billing, an admin or that
workspace's admin approves it — which sets the workspace's limit to the approved amount — or denies it,
in the console or with ``client.organization.spend_limits.increase_requests``. Amounts on the wire are
decimal strings in cents.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from wisegate.domain.clock import Clock
from wisegate.domain.limits import LimitService
from wisegate.domain.limits.accounts import BillingAccounts
from wisegate.domain.limits.service import usd_to_pico
from wisegate.domain.pricing import format_usd, parse_usd
from wisegate.domain.scope import Scope
from wisegate.domain.storable import storable_name
from wisegate.domain.tenancy import TenancyService
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.bounds import MAX_AMOUNT_PICO, MAX_AMOUNT_USD, REASON_LENGTH, echo
from wisegate.protocol.messages import new_id
from wisegate.records.billing import billing_period
from wisegate.records.directory import User
from wisegate.records.principals import SpendLimitRequest
from wisegate.storage.directory import DirectoryRepo
from wisegate.storage.principals import SpendRequestRepo
from wisegate.storage.request_log import RequestLogRepo

PICO_PER_CENT = 10**10
STATUSES = ("pending", "approved", "denied")


def cents(pico: int) -> str:
    """Picodollars as a decimal string of cents, to three decimals at most (``"12050.5"``)."""
    value = (Decimal(pico) / PICO_PER_CENT).quantize(Decimal("0.001"))
    text = format(value.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")


def pico_of_cents(amount: str) -> int:
    return int(amount) * PICO_PER_CENT


LIMIT_AMOUNTS = f"whole cents from $0.01 to ${MAX_AMOUNT_USD:,} (e.g. 250 or 12.50)"


def parse_limit_usd(text: str) -> int:
    """A monthly limit typed in USD on an increase request, asked for or approved (both forms go through
    here, so both take the same amounts): ``parse_usd``'s syntax and range, more than $0, in whole cents
    (the Admin API's unit) — a sub-cent amount is refused, never rounded. ``ValueError`` says which
    amounts are accepted."""
    try:
        pico = parse_usd(text)
    except ValueError as exc:
        raise ValueError(f"{exc}; enter {LIMIT_AMOUNTS}") from None
    if pico <= 0 or pico % PICO_PER_CENT:
        raise ValueError(f"'{echo(text)}' is not accepted; enter {LIMIT_AMOUNTS}")
    return pico


def usd_field(pico: int) -> str:
    """Picodollars as the USD text a form offers (``"1234.50"``), exactly: two decimals, more only when
    the amount has them (never a float's rounding, which would offer another amount than was asked)."""
    value = Decimal(pico) / PICO_PER_CENT / 100
    whole_cents = value.quantize(Decimal("0.01"))
    return format(whole_cents if whole_cents == value else value.normalize(), "f")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked or resolved: a person (``user``) or an admin key (``admin_key``)."""

    type: str
    id: str
    user: User | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """A spend summary row: who, what limit applies (None: none), and what was spent this month."""

    actor: Actor
    amount_pico: int | None
    spent_pico: int
    scope: str  # organization | usage_tier | workspace
    workspace_id: str | None
    spend_limit_id: str


@dataclass(frozen=True, slots=True)
class RequestView:
    request: SpendLimitRequest
    actor: Actor
    resolved_by: Actor | None
    summary: Summary | None


@dataclass(frozen=True, slots=True)
class WorkspaceLimit:
    workspace_id: str
    amount_pico: int | None
    updated_at: datetime


class SpendLimitService:
    def __init__(
        self,
        repo: SpendRequestRepo,
        directory: DirectoryRepo,
        limits: LimitService,
        billing: BillingAccounts,
        tenancy: TenancyService,
        usage: RequestLogRepo,
        clock: Clock,
        settled: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._repo = repo
        self._directory = directory
        self._limits = limits
        self._billing = billing
        self._tenancy = tenancy
        self._usage = usage
        self._clock = clock
        self._settled = settled  # this process's journaled settlements, committed before spend is read

    async def _user_actor(self, user_id: str) -> Actor:
        return Actor("user", user_id, await self._directory.get_user(user_id))

    async def effective(
        self, scope: Scope, *, user_ids: Sequence[str] = (), periods: Sequence[str] = ()
    ) -> list[Summary]:
        """One monthly row per person of the organization (by ``user_ids`` when given); the spend
        includes the requests this process answered just before (their settlements are committed first)."""
        scope.require_admin()
        if periods and "monthly" not in periods:
            return []
        account = await self._limits.account(scope.organization_id)
        tier = self._limits.tier_of(account)
        tier_cap = (
            usd_to_pico(tier.monthly_spend_cap_usd)
            if self._limits.config.enabled and tier.monthly_spend_cap_usd is not None
            else None
        )
        own = account.spend_limit_pico
        if own is not None and (tier_cap is None or own <= tier_cap):
            amount, source = own, "organization"
        elif tier_cap is not None:
            amount, source = tier_cap, "usage_tier"
        else:
            amount, source = None, "organization"
        now = self._clock.now()
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        keys = await self._tenancy.list_keys(scope)
        users = sorted(
            await self._directory.list_users(scope.organization_id), key=lambda u: (u.added_at, u.id)
        )
        if user_ids:
            users = [u for u in users if u.id in set(user_ids)]
        if self._settled is not None:
            await self._settled()
        rows = []
        for user in users:
            key_ids = [k.id for k in keys if k.created_by_user_id == user.id]
            spent = await self._usage.cost_of_keys(key_ids, month_start) if key_ids else 0
            rows.append(
                Summary(
                    Actor("user", user.id, user),
                    amount,
                    spent,
                    source,
                    None,
                    f"spl_{source}_{scope.organization_id}",
                )
            )
        return rows

    async def workspace_limit(self, workspace_id: str) -> WorkspaceLimit:
        limits = await self._limits.billing.workspace_limits(workspace_id)
        return WorkspaceLimit(workspace_id, limits.spend_limit_pico, self._clock.now())

    async def _summary(self, request: SpendLimitRequest, actor: Actor) -> Summary:
        limits = await self._limits.billing.workspace_limits(request.workspace_id)
        spent, _reserved = await self._limits.billing.period_spend(
            request.workspace_id, billing_period(self._clock.now())
        )
        return Summary(
            actor,
            limits.spend_limit_pico,
            spent,
            "workspace",
            request.workspace_id,
            f"spl_{request.workspace_id}",
        )

    async def _view(self, request: SpendLimitRequest) -> RequestView:
        actor = await self._user_actor(request.user_id)
        resolved_by = None
        if request.resolved_by_type == "user" and request.resolved_by_id:
            resolved_by = await self._user_actor(request.resolved_by_id)
        elif request.resolved_by_type and request.resolved_by_id:
            resolved_by = Actor(request.resolved_by_type, request.resolved_by_id)
        summary = await self._summary(request, actor) if request.status == "pending" else None
        return RequestView(request, actor, resolved_by, summary)

    async def ask(
        self, organization_id: str, user_id: str, workspace_id: str, requested_pico: int | None, reason: str
    ) -> RequestView:
        """A person asks for a higher monthly spend limit of a workspace they work in (the caller
        checked that they do); one pending request per person and workspace."""
        scope = Scope(organization_id, None)
        view = await self._tenancy.get_workspace(scope, workspace_id)
        if view.workspace.archived_at is not None:
            raise InvalidRequest(f"workspace {workspace_id} is archived")
        if requested_pico is not None and not 0 < requested_pico <= MAX_AMOUNT_PICO:
            raise InvalidRequest(f"Amount: ask for more than $0 and at most ${MAX_AMOUNT_USD:,}")
        # Shown on the Limits page and by `wisegate spend-requests list`: refused whole, never cut.
        reason = storable_name("Reason", reason.strip(), REASON_LENGTH)
        for existing in await self._repo.list_requests(organization_id):
            if (
                existing.status == "pending"
                and existing.user_id == user_id
                and existing.workspace_id == workspace_id
            ):
                raise InvalidRequest(
                    "You already asked for a higher limit of this workspace; wait until billing or an admin "
                    "answers it."
                )
        current, whose = await self._current_limit(organization_id, workspace_id)
        if requested_pico is not None and current is not None and requested_pico <= current:
            raise InvalidRequest(
                f"Amount: ask for more than the current monthly spend limit ({whose}: "
                f"{format_usd(current)}); approving it would not raise the limit."
            )
        request = SpendLimitRequest(
            new_id("slir"),
            organization_id,
            workspace_id,
            user_id,
            requested_pico,
            reason,
            "pending",
            self._clock.now(),
        )
        await self._repo.add(request)
        return await self._view(request)

    async def _current_limit(self, organization_id: str, workspace_id: str) -> tuple[int | None, str]:
        """The monthly limit a request must exceed: the workspace's own, else the organization's (its own
        limit or its tier's cap, the lower); None when neither is set."""
        own = (await self._limits.billing.workspace_limits(workspace_id)).spend_limit_pico
        if own is not None:
            return own, "the workspace's"
        account = await self._limits.account(organization_id)
        tier = self._limits.tier_of(account)
        caps = [account.spend_limit_pico]
        if self._limits.config.enabled and tier.monthly_spend_cap_usd is not None:
            caps.append(usd_to_pico(tier.monthly_spend_cap_usd))
        known = [c for c in caps if c is not None]
        return (min(known), "the organization's") if known else (None, "")

    async def list_requests(
        self, scope: Scope, *, actor_ids: Sequence[str] = (), statuses: Sequence[str] = ()
    ) -> list[RequestView]:
        """Newest first; requests of people no longer in the organization are left out."""
        for status in statuses:
            if status not in STATUSES:
                raise InvalidRequest(f"status: '{echo(status)}' is not one of {', '.join(STATUSES)}")
        views = []
        for request in await self._repo.list_requests(scope.organization_id):
            if actor_ids and request.user_id not in actor_ids:
                continue
            if statuses and request.status not in statuses:
                continue
            if not scope.sees(request.organization_id, request.workspace_id):
                continue
            view = await self._view(request)
            if view.actor.user is not None:
                views.append(view)
        return views

    async def get(self, scope: Scope, request_id: str) -> RequestView:
        request = await self._repo.get(request_id)
        missing = f"spend limit increase request {echo(request_id)} not found"
        if request is None:
            raise NotFound(missing)
        scope.require(request.organization_id, request.workspace_id, missing)
        return await self._view(request)

    async def approve(
        self, scope: Scope, request_id: str, amount_pico: int, by: Actor, *, period: str | None = None
    ) -> tuple[RequestView, WorkspaceLimit]:
        """Set the workspace's monthly spend limit to ``amount_pico`` (more than $0, at most
        ``MAX_AMOUNT_USD``) and mark the request approved. The caller checked that ``by`` may set that
        workspace's limits."""
        if period not in (None, "monthly"):
            raise InvalidRequest(
                f"period: Wisegate's spend limits are monthly; '{echo(period)}' is not available"
            )
        if not 0 < amount_pico <= MAX_AMOUNT_PICO:  # $0 would stop the workspace: that is a denial
            raise InvalidRequest(
                f"amount: approve a monthly limit from 1 to {MAX_AMOUNT_USD * 100} cents "
                f"(${MAX_AMOUNT_USD:,}); to refuse the increase, deny the request"
            )
        current = await self.get(scope, request_id)
        if current.request.status != "pending":
            raise InvalidRequest(
                f"spend limit increase request {request_id} is already {current.request.status}"
            )
        request = current.request
        resolved = await self._repo.resolve(
            request_id, "approved", self._clock.now(), by.type, by.id, amount_pico
        )
        if resolved is None:
            raise InvalidRequest(f"spend limit increase request {request_id} was resolved meanwhile")
        await self._billing.set_spend_limit(request.organization_id, amount_pico, request.workspace_id)
        return await self._view(resolved), await self.workspace_limit(request.workspace_id)

    async def deny(self, scope: Scope, request_id: str, by: Actor) -> RequestView:
        """Idempotent on a denied request; an approved one cannot be denied (400)."""
        current = await self.get(scope, request_id)
        if current.request.status == "denied":
            return current
        if current.request.status == "approved":
            raise InvalidRequest(f"spend limit increase request {request_id} is already approved")
        resolved = await self._repo.resolve(request_id, "denied", self._clock.now(), by.type, by.id)
        if resolved is None:
            return await self.get(scope, request_id)
        return await self._view(resolved)
