"""Service accounts, their workspace memberships, and spend limit increase requests (the Admin API's
newer resources), as the domain sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    id: str
    organization_id: str
    name: str
    description: str
    organization_role: str
    created_at: datetime
    created_by_actor_id: str | None
    updated_at: datetime
    updated_by_actor_id: str | None
    archived_at: datetime | None = None
    archived_by_actor_id: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceAccountMember:
    workspace_id: str
    service_account_id: str
    workspace_role: str
    created_at: datetime
    created_by_actor_id: str | None
    implicit: bool = False  # the default workspace's membership every service account has


@dataclass(frozen=True, slots=True)
class SpendLimitRequest:
    id: str
    organization_id: str
    workspace_id: str
    user_id: str
    requested_pico: int | None
    reason: str
    status: str  # pending | approved | denied
    created_at: datetime
    resolved_at: datetime | None = None
    resolved_by_type: str | None = None  # user | admin_key
    resolved_by_id: str | None = None
    approved_pico: int | None = None
