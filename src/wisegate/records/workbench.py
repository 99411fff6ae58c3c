"""A prompt saved from the console's workbench."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class SavedPrompt:
    id: str
    organization_id: str
    owner_id: str
    name: str
    state: str  # JSON: the workbench form (model, parameters, system, tools, turns)
    created_at: datetime
    updated_at: datetime
