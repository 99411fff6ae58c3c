"""Wire shapes of the Files and Skills APIs (anthropic 2.10.0 ``types/beta``)."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class FileMetadata(BaseModel):
    id: str
    type: Literal["file"] = "file"
    filename: str
    mime_type: str
    size_bytes: int
    created_at: str
    downloadable: bool
    expires_at: str | None = None


class DeletedFile(BaseModel):
    id: str
    type: Literal["file_deleted"] = "file_deleted"


class CursorPage(BaseModel, Generic[T]):
    """A list page both pagination styles can read: ``SyncPageCursor`` follows ``next_page``;
    older clients (``SyncPage``) use ``has_more``/``first_id``/``last_id`` with ``after_id``."""

    data: list[T]
    has_more: bool
    first_id: str | None
    last_id: str | None
    next_page: str | None


class SkillSource(BaseModel):
    type: Literal["custom", "anthropic", "anthropic_example", "plugin"] = "custom"


class Skill(BaseModel):
    id: str
    type: Literal["skill"] = "skill"
    source: SkillSource
    display_name: str
    latest_version_id: str
    created_at: str
    updated_at: str
    # The pre-2.10 field names, for older clients.
    display_title: str
    latest_version: str


class SkillVersion(BaseModel):
    id: str
    type: Literal["skill_version"] = "skill_version"
    skill_id: str
    name: str
    description: str
    created_at: str
    # ``version`` (epoch microseconds, the same string as ``id``) and ``directory`` are the pre-2.10 fields.
    version: str
    directory: str


class DeletedSkill(BaseModel):
    id: str
    type: Literal["skill_deleted"] = "skill_deleted"


class DeletedSkillVersion(BaseModel):
    id: str
    type: Literal["skill_version_deleted"] = "skill_version_deleted"
