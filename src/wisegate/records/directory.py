"""The Admin API's directory: workspace settings, users, invites and workspace members."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class WorkspaceSettings:
    workspace_id: str
    display_color: str
    allowed_models: tuple[str, ...] | None  # None: every served model


@dataclass(frozen=True, slots=True)
class User:
    id: str
    organization_id: str
    email: str
    name: str
    role: str
    added_at: datetime


@dataclass(frozen=True, slots=True)
class Invite:
    id: str
    organization_id: str
    email: str
    role: str
    status: str
    invited_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    workspace_grants: tuple[tuple[str, str], ...] = ()  # (workspace id, workspace role) given on accept
    token_nonce: str | None = None  # with the console secret, makes the accept link's token


@dataclass(frozen=True, slots=True)
class WorkspaceMember:
    workspace_id: str
    user_id: str
    workspace_role: str
    added_at: datetime
