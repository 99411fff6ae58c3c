"""Code execution containers (their files live on the node that created them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    id: str
    organization_id: str
    workspace_id: str
    node: str
    skills: str  # JSON: [{"type", "skill_id", "version"}]
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    run_ms: int = 0
