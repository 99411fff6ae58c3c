"""Console accounts: server-side sessions, the audit record and sign-in throttles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    id: str  # SHA-256 (hex) of the cookie's token; the token itself is never stored
    organization_id: str
    user_id: str | None  # a person's session…
    admin_key_id: str | None  # …or an admin key's (the bootstrap login)
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    ip: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    organization_id: str
    at: datetime
    actor_type: str  # user | admin_key | cli (the wisegate command) | anonymous
    actor_id: str | None
    action: str
    target: str | None = None
    ip: str | None = None
    detail: dict[str, str] | None = None
    id: int = 0


@dataclass(frozen=True, slots=True)
class Throttle:
    subject: str
    failures: int
    last_failure_at: datetime
    blocked_until: datetime | None
