"""Stored files, skills and skill versions (the bytes live in a blob store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    organization_id: str
    workspace_id: str
    filename: str
    mime_type: str
    size_bytes: int
    downloadable: bool
    blob_key: str
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class SkillRecord:
    id: str
    organization_id: str
    workspace_id: str
    name: str
    display_name: str
    created_at: datetime
    updated_at: datetime
    latest_version: str | None


@dataclass(frozen=True, slots=True)
class SkillVersionRecord:
    skill_id: str
    version: str
    name: str
    description: str
    directory: str
    instructions: str
    paths: str
    size_bytes: int
    blob_key: str
    created_at: datetime


Position = tuple[datetime, str]
"""Where a newest-first listing stands: ``(created_at, id)`` of the last item seen."""
