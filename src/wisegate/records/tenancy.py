"""Organizations, workspaces and API keys, as the domain sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    organization_id: str
    name: str
    created_at: datetime
    archived_at: datetime | None


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    organization_id: str
    workspace_id: str
    name: str
    partial_key_hint: str
    kind: str
    status: str
    created_at: datetime
    created_by_user_id: str | None = None  # the console user who made it (None: the CLI or the Admin API)
    service_account_id: str | None = None  # the service account whose key it is
