"""Admission and settlement: rate-limit buckets, monthly spend caps and prepaid credits.

``admit`` runs before a backend starts: it takes one request, the exact input tokens and
``max_tokens`` output tokens from every bucket that applies (organization, then the workspace's lower
limits), and reserves the most the request can cost against the monthly caps and the credit balance
(from this process's spend lease, see ``leases.py``; near a cap, one transaction per request).
Nothing is admitted on credit: a request that does not fit is refused whole. ``settle`` runs when the
response ends (also on disconnect or error): one transaction releases the reservation (or the request's
part of the lease), debits the actual cost and writes the usage record; the unused tokens go back to
the buckets without waiting for the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from wisegate.domain.keys import Principal
from wisegate.domain.limits.buckets import Bucket, Demand, Dimension, Limiter, Take
from wisegate.domain.limits.leases import SpendLeases
from wisegate.domain.pricing import PriceTable
from wisegate.errors import InvalidRequest, RateLimited
from wisegate.protocol.bounds import PICO_PER_USD
from wisegate.protocol.messages import Usage
from wisegate.protocol.numbers import seconds
from wisegate.records.billing import BillingAccount, Reservation, WorkspaceLimits, billing_period
from wisegate.records.usage import UsageRecord
from wisegate.settings.tiers import LimitsConfig, RateLimits, TierConfig
from wisegate.storage.billing import BillingRepo, SpendRefused
from wisegate.telemetry import metrics

log = logging.getLogger("wisegate.limits")
T = TypeVar("T")

_UNITS = {"requests": "requests", "input-tokens": "input tokens", "output-tokens": "output tokens"}


@dataclass(frozen=True, slots=True)
class LimitState:
    """What the ``anthropic-ratelimit-<dimension>-*`` headers say."""

    limit: int
    remaining: float
    reset_at: float  # epoch seconds when the bucket is full again


@dataclass(frozen=True, slots=True)
class RateLimitSnapshot:
    """The most restrictive bucket of each dimension, as of this request."""

    states: dict[str, LimitState]


class RateLimitExceeded(RateLimited):
    """429 naming the limit hit; carries the snapshot for the response headers."""

    def __init__(self, message: str, retry_after: float, snapshot: RateLimitSnapshot) -> None:
        super().__init__(message, retry_after=retry_after)
        self.rate_limits = snapshot


class SpendCapReached(RateLimited):
    """The tier's monthly cap: 429 with ``enforced_spend_limit_reached`` and no retry-after."""

    headers = {"x-should-retry": "false"}


@dataclass(frozen=True, slots=True)
class _Workspace:
    """A workspace's limits with its lower rate limits parsed once per cache load."""

    limits: WorkspaceLimits
    rates: dict[str, RateLimits]


@dataclass
class Admission:
    """What one admitted request holds until it is settled."""

    principal: Principal
    demands: list[Demand] = field(default_factory=list)
    input_tokens: int = 0
    max_tokens: int = 0
    reservation: Reservation | None = None
    snapshot: RateLimitSnapshot | None = None
    batch: bool = False


def next_month(moment: datetime) -> datetime:
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def usd_to_pico(usd: str) -> int:
    return int(Decimal(usd) * PICO_PER_USD)


class _TtlCache:
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._values: dict[str, tuple[float, Any]] = {}

    def peek(self, key: str) -> Any:
        """The cached value if still fresh, else None (no await on the hot path)."""
        hit = self._values.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    async def get(self, key: str, load: Callable[[], Any]) -> Any:
        hit = self.peek(key)
        if hit is not None:
            return hit
        now = time.monotonic()
        value = await load()
        if len(self._values) > 10_000:
            self._values.clear()
        self._values[key] = (now + self._seconds, value)
        return value

    def clear(self) -> None:
        self._values.clear()


class LimitService:
    def __init__(
        self,
        config: LimitsConfig,
        limiter: Limiter,
        billing: BillingRepo,
        prices: PriceTable,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.limiter = limiter
        self.billing = billing
        self.prices = prices
        self._clock = clock
        self._accounts = _TtlCache(config.cache_seconds)
        self._workspaces = _TtlCache(config.cache_seconds)
        self._classes: dict[str, str | None] = {}
        self._bucket_cache: dict[tuple[str, str, str, int, int, int], tuple[Bucket, ...]] = {}
        self._thresholds = [usd_to_pico(t.advance_at_usd) for t in config.tiers]
        self._tier_caps = {
            t.name: usd_to_pico(t.monthly_spend_cap_usd) if t.monthly_spend_cap_usd is not None else None
            for t in config.tiers
        }
        self._sweeper: asyncio.Task[None] | None = None
        self.leases = SpendLeases(billing, config.reservation_timeout_seconds)

    async def start(self) -> None:
        """Replay the ledger journals of dead processes, then release reservations they left; again
        every few minutes (for processes that die while this one runs). Keep this process's spend
        leases renewed."""
        await self.billing.recover()
        self._sweeper = asyncio.create_task(self._sweep_forever())
        self.leases.start()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.leases.close()
        await self.billing.stop()
        await self.limiter.close()

    async def _sweep_forever(self) -> None:
        timeout = self.config.reservation_timeout_seconds
        while True:
            try:
                await self.billing.recover()
                released = await self.billing.release_stale(self._clock() - timedelta(seconds=timeout))
                if released:
                    log.warning("released %d stale spend reservations", released)
            except Exception:
                log.exception("could not release stale spend reservations")
            await asyncio.sleep(max(1.0, timeout / 4))

    async def account(self, organization_id: str) -> BillingAccount:
        cached: BillingAccount | None = self._accounts.peek(organization_id)
        if cached is not None:
            return cached
        result: BillingAccount = await self._accounts.get(
            organization_id, lambda: self.billing.account(organization_id)
        )
        return result

    async def _workspace(self, workspace_id: str) -> _Workspace:
        cached: _Workspace | None = self._workspaces.peek(workspace_id)
        if cached is not None:
            return cached

        async def load() -> _Workspace:
            limits = await self.billing.workspace_limits(workspace_id)
            rates = {c: RateLimits.model_validate(r) for c, r in (limits.rate_limits or {}).items() if r}
            return _Workspace(limits, rates)

        result: _Workspace = await self._workspaces.get(workspace_id, load)
        return result

    def forget_cached(self) -> None:
        """Drop cached accounts and workspace limits (after an operator changed them)."""
        self._accounts.clear()
        self._workspaces.clear()

    def tier_of(self, account: BillingAccount) -> TierConfig:
        """The pinned tier, else the highest whose threshold the organization has reached."""
        tiers = self.config.tiers
        if account.tier is not None:
            for tier in tiers:
                if tier.name == account.tier:
                    return tier
        reached = (
            account.credits_purchased_pico
            if self.config.advance_by == "credit_purchases"
            else account.spent_pico
        )
        current = tiers[0]
        for tier, threshold in zip(tiers, self._thresholds, strict=True):
            if reached >= threshold:
                current = tier
        return current

    def model_class(self, model: str) -> str | None:
        try:
            return self._classes[model]
        except KeyError:
            pass
        found = None
        for name, patterns in self.config.model_classes.items():
            if any(fnmatch.fnmatchcase(model, p) for p in patterns):
                found = name
                break
        if len(self._classes) > 10_000:
            self._classes.clear()
        self._classes[model] = found
        return found

    def _buckets(self, scope: str, scope_id: str, model_class: str, limits: RateLimits) -> tuple[Bucket, ...]:
        """The three buckets of a scope and model class (built once, then reused)."""
        key = (scope, scope_id, model_class, limits.rpm, limits.itpm, limits.otpm)
        found = self._bucket_cache.get(key)
        if found is None:
            if len(self._bucket_cache) > 10_000:
                self._bucket_cache.clear()
            found = self._bucket_cache[key] = tuple(
                Bucket(f"{scope_id}:{model_class}:{dimension}", dimension, scope, scope_id, model_class, cap)  # type: ignore[arg-type]
                for dimension, cap in (
                    ("requests", limits.rpm),
                    ("input-tokens", limits.itpm),
                    ("output-tokens", limits.otpm),
                )
            )
        return found

    def _demands(
        self,
        principal: Principal,
        tier: TierConfig,
        ws: _Workspace,
        model_class: str,
        inp: int,
        out: int,
    ) -> list[Demand]:
        demands: list[Demand] = []
        org_limits = tier.rate_limits.get(model_class)
        if org_limits is not None:
            r, i, o = self._buckets("organization", principal.organization_id, model_class, org_limits)
            demands += ((r, 1), (i, inp), (o, out))
        lower = ws.rates.get(model_class)
        if lower is not None:
            r, i, o = self._buckets("workspace", principal.workspace_id, model_class, lower)
            demands += ((r, 1), (i, inp), (o, out))
        return demands

    async def admit(
        self,
        principal: Principal,
        model: str,
        input_tokens: int,
        max_tokens: int,
        request_id: str,
        *,
        batch: bool = False,
    ) -> Admission:
        """Take the rate-limit buckets and reserve the spend, or raise (429 / 400) taking nothing."""
        account = await self.account(principal.organization_id)
        ws = await self._workspace(principal.workspace_id)
        tier = self.tier_of(account)
        admission = Admission(principal, input_tokens=input_tokens, max_tokens=max_tokens, batch=batch)
        model_class = self.model_class(model)
        # Message Batches have their own limits; their requests do not use the Messages buckets.
        if self.config.enabled and not batch and model_class is not None:
            demands = self._demands(principal, tier, ws, model_class, input_tokens, max_tokens)
            if demands:
                taken = await self.limiter.take(demands)
                admission.snapshot = snapshot_of(taken)
                if not taken.admitted:
                    raise _exceeded(taken, demands, admission.snapshot)
                admission.demands = demands
        try:
            admission.reservation = await self._reserve(
                principal, account, ws.limits, tier, model, admission, request_id
            )
        except BaseException:
            await self._give_back(admission.demands)
            raise
        return admission

    async def _reserve(
        self,
        principal: Principal,
        account: BillingAccount,
        ws: WorkspaceLimits,
        tier: TierConfig,
        model: str,
        admission: Admission,
        request_id: str,
    ) -> Reservation | None:
        worst = self.worst_cost(model, admission.input_tokens, admission.max_tokens, batch=admission.batch)
        if worst == 0:
            return None
        now = self._clock()
        tier_cap = self._tier_caps.get(tier.name) if self.config.enabled else None
        caps = [c for c in (tier_cap, account.spend_limit_pico) if c is not None]
        if not caps and ws.spend_limit_pico is None and account.credit_balance_pico is None:
            return None  # nothing bounds this spend: settlement still books it, no reservation needed
        reservation = Reservation(
            request_id,
            principal.organization_id,
            principal.workspace_id,
            billing_period(now),
            worst,
            worst if account.credit_balance_pico is not None else 0,
        )
        try:
            reservation = await self.leases.reserve(
                reservation, min(caps) if caps else None, ws.spend_limit_pico
            )
        except SpendRefused as refused:
            metrics.REFUSALS.labels("credit" if refused.scope == "credit" else "spend").inc()
            regain = next_month(now).strftime("%Y-%m-%d")
            if refused.scope == "credit":
                raise InvalidRequest(
                    "Your credit balance is too low to access the API. Add credits "
                    "(`wisegate credits add`) or ask your administrator to."
                ) from None
            if refused.scope == "workspace":
                raise InvalidRequest(
                    "You have reached your specified workspace API usage limits. "
                    f"You will regain access on {regain} at 00:00 UTC."
                ) from None
            user_cap = account.spend_limit_pico
            if user_cap is not None and (tier_cap is None or user_cap <= tier_cap):
                raise InvalidRequest(
                    f"You have reached your specified API usage limits. You will regain access on {regain} "
                    "at 00:00 UTC."
                ) from None
            raise SpendCapReached(
                "You have reached your API usage limits: your organization has crossed its monthly API "
                f"usage threshold, set based on your organization's API tier ({tier.name}). You will regain "
                f"access on {regain} at 00:00 UTC.",
                details={"error_code": "enforced_spend_limit_reached"},
            ) from None
        return reservation

    def worst_cost(self, model: str, input_tokens: int, max_tokens: int, *, batch: bool = False) -> int:
        """The most a request can cost: every input token at the dearest input-side price (a cache
        write costs more than plain input), and all of ``max_tokens``."""
        p = self.prices.price(model)
        total = input_tokens * max(p.input, p.cache_write_5m, p.cache_write_1h) + max_tokens * p.output
        return total // 2 if batch else total

    async def settle(self, admission: Admission | None, record: UsageRecord, usage: Usage) -> UsageRecord:
        """Ledger row + debit in one transaction, then give unused tokens back to the buckets."""
        batch = record.batch or usage.service_tier == "batch"
        cost = self.prices.cost(record.model, usage, batch=batch)
        record = replace(
            record, cost_picousd=cost, batch=batch, service_tier="batch" if batch else record.service_tier
        )
        reservation = admission.reservation if admission else None
        if reservation is not None:
            reservation = self.leases.settled(reservation, cost)
        await self.billing.settle(record, reservation, billing_period(self._clock()))
        _count(record, usage, cost)
        if admission is not None and admission.demands:
            counted = usage.input_tokens + usage.cache_creation_input_tokens
            unused = {
                "requests": 0,
                "input-tokens": max(0, admission.input_tokens - counted),
                "output-tokens": max(0, admission.max_tokens - usage.output_tokens),
            }
            await self._give_back([(b, unused[b.dimension]) for b, _ in admission.demands])
        return record

    async def finish_round(self, admission: Admission, input_tokens: int) -> None:
        """End a later model round of one request (the code execution loop), admitted like a request:
        its input tokens stay taken; the request, output and spend are settled with the request."""
        keep = {"input-tokens": min(input_tokens, admission.input_tokens)}
        await self._give_back([(b, n - keep.get(b.dimension, 0)) for b, n in admission.demands])
        admission.demands = []
        await self.release(admission)

    async def release(self, admission: Admission) -> None:
        """Undo an admission whose request never reached the backend."""
        await self._give_back(admission.demands)
        if admission.reservation is not None:
            back = self.leases.released(admission.reservation)
            if back is not None:
                await self.billing.release(back)

    async def _give_back(self, demands: list[Demand]) -> None:
        back = [(b, n) for b, n in demands if n > 0]
        if not back:
            return
        try:
            await self.limiter.give_back(back)
        except Exception:
            log.exception("could not return unused tokens to the rate-limit buckets")

    async def admit_count_tokens(self, principal: Principal) -> RateLimitSnapshot | None:
        """Token counting has its own requests-per-minute limit per organization."""
        if not self.config.enabled:
            return None
        tier = self.tier_of(await self.account(principal.organization_id))
        if tier.count_tokens_rpm is None:
            return None
        bucket = Bucket(
            f"{principal.organization_id}:count_tokens:requests",
            "requests",
            "organization",
            principal.organization_id,
            "count_tokens",
            tier.count_tokens_rpm,
        )
        taken = await self.limiter.take([(bucket, 1)])
        snapshot = snapshot_of(taken)
        if not taken.admitted:
            raise _exceeded(taken, [(bucket, 1)], snapshot)
        return snapshot


def snapshot_of(taken: Take) -> RateLimitSnapshot:
    states: dict[str, LimitState] = {}
    for level in taken.levels:
        b = level.bucket
        remaining = max(0.0, level.remaining)
        state = LimitState(b.capacity, remaining, taken.now + (b.capacity - remaining) / b.rate)
        current = states.get(b.dimension)
        if current is None or state.remaining < current.remaining:
            states[b.dimension] = state
    return RateLimitSnapshot(states)


def _count(record: UsageRecord, usage: Usage, cost: int) -> None:
    """A settlement in the metrics: tokens by kind and cost, by model and workspace."""
    model, workspace = record.model, record.workspace_id
    for kind, tokens in (
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
        ("cache_creation", usage.cache_creation_input_tokens),
        ("cache_read", usage.cache_read_input_tokens),
    ):
        if tokens:  # no series for what used nothing (a refused request may name any model)
            metrics.TOKENS.labels(model, workspace, kind).inc(tokens)
    if cost:
        metrics.COST.labels(model, workspace).inc(cost / PICO_PER_USD)


def _exceeded(taken: Take, demands: list[Demand], snapshot: RateLimitSnapshot) -> RateLimitExceeded:
    bucket = taken.failed
    assert bucket is not None
    metrics.REFUSALS.labels(bucket.dimension).inc()
    amount = next(n for b, n in demands if b is bucket)
    unit = _UNITS[bucket.dimension]
    who = f"your {bucket.scope} ({bucket.scope_id})"
    if amount > bucket.capacity:
        return RateLimitExceeded(
            f"This request would exceed the rate limit for {who} of {bucket.capacity:,} {unit} per minute "
            f"for {bucket.model_class} models: it needs {amount:,} {unit}. Reduce the prompt length or "
            "max_tokens, or ask for a higher limit.",
            60.0,
            snapshot,
        )
    retry = max(1, math.ceil(taken.retry_after))
    return RateLimitExceeded(
        f"This request would exceed the rate limit for {who} of {bucket.capacity:,} {unit} per minute "
        f"for {bucket.model_class} models. Retry after {seconds(retry)}; the "
        "anthropic-ratelimit-* response headers show current usage.",
        float(retry),
        snapshot,
    )


__all__ = [
    "Admission",
    "Dimension",
    "LimitService",
    "LimitState",
    "RateLimitExceeded",
    "RateLimitSnapshot",
    "SpendCapReached",
]
