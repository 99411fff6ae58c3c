"""The stored state of a message thread."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    id: str
    organization_id: str
    workspace_id: str
    model: str
    state: str
    created_at: datetime
    expires_at: datetime
