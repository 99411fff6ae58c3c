"""Billing state: an organization's account, a workspace's limits, a request's reservation."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class BillingAccount:
    organization_id: str
    tier: str | None = None
    credit_balance_pico: int | None = None
    credits_purchased_pico: int = 0
    spent_pico: int = 0
    spend_limit_pico: int | None = None


@dataclass(frozen=True, slots=True)
class WorkspaceLimits:
    workspace_id: str
    spend_limit_pico: int | None = None
    rate_limits: dict[str, dict[str, int]] | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """Picodollars held by one in-flight request (``credit_pico``: also held from the credit balance).

    With ``lease`` set, ``request_id`` names a process's spend lease (see :meth:`BillingRepo.take_lease`)
    and the amounts are the part of that lease this request hands back when it is settled or released.
    """

    request_id: str
    organization_id: str
    workspace_id: str
    period: str
    amount_pico: int
    credit_pico: int
    lease: bool = False


def billing_period(moment: datetime) -> str:
    """The billing period (UTC calendar month, ``YYYY-MM``) a moment falls in: spend counters and caps
    are per period."""
    return _period(moment.year, moment.month)


@functools.lru_cache(maxsize=64)
def _period(year: int, month: int) -> str:  # formatted once per month, not once per settlement
    return f"{year:04d}-{month:02d}"
