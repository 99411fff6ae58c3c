"""Wire shapes of the resource endpoints: models, list pages and the error envelope."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class ModelInfo(BaseModel):
    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: str
    lifecycle: Literal["active", "deprecated", "retired"] = "active"
    max_input_tokens: int | None = None
    max_tokens: int | None = None


class ListPage(BaseModel, Generic[T]):
    """The ``SyncPage`` envelope: ``data``, ``has_more``, ``first_id``, ``last_id``."""

    data: list[T]
    has_more: bool
    first_id: str | None
    last_id: str | None


def error_envelope(
    error_type: str, message: str, request_id: str | None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if details:
        error["details"] = details
    return {"type": "error", "error": error, "request_id": request_id}
