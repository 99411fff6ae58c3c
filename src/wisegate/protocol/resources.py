"""Wire shapes of the resource endpoints: models, list pages and the error envelope."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


def rfc3339(value: datetime, *, whole_seconds: bool = False) -> str:
    """A moment as the Claude API writes it: RFC 3339 in UTC with ``Z`` (``2025-01-01T00:00:00.123456Z``;
    fractional seconds only when it has them, and never with ``whole_seconds``)."""
    spec = "seconds" if whole_seconds else "auto"
    return value.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


class CapabilitySupport(BaseModel):
    supported: bool


class ThinkingTypes(BaseModel):
    adaptive: CapabilitySupport
    between_tools: CapabilitySupport
    disabled: CapabilitySupport
    enabled: CapabilitySupport


class ThinkingCapability(BaseModel):
    supported: bool
    types: ThinkingTypes


class EffortCapability(BaseModel):
    supported: bool
    low: CapabilitySupport
    medium: CapabilitySupport
    high: CapabilitySupport
    max: CapabilitySupport
    xhigh: CapabilitySupport | None = None


class ContextManagementCapability(BaseModel):
    supported: bool
    clear_thinking_20251015: CapabilitySupport | None = None
    clear_tool_uses_20250919: CapabilitySupport | None = None
    compact_20260112: CapabilitySupport | None = None


class ServerToolsCapability(BaseModel):
    supported: bool
    code_execution: CapabilitySupport
    web_search: CapabilitySupport


class ModelCapabilities(BaseModel):
    batch: CapabilitySupport
    citations: CapabilitySupport
    code_execution: CapabilitySupport
    context_management: ContextManagementCapability
    effort: EffortCapability
    image_input: CapabilitySupport
    pdf_input: CapabilitySupport
    server_tools: ServerToolsCapability
    structured_outputs: CapabilitySupport
    thinking: ThinkingCapability


ModelLifecycle = Literal["active", "deprecated", "retired"]
ModelLine = Literal["haiku", "sonnet", "opus", "fable", "mythos"]


class ModelInfo(BaseModel):
    """anthropic 2.10.0 ``ModelInfo``: every field the SDK declares."""

    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: str
    lifecycle: ModelLifecycle = "active"
    deprecated_at: str | None = None
    retires_at: str | None = None
    line: ModelLine | None = None
    max_input_tokens: int | None = None
    max_tokens: int | None = None
    capabilities: ModelCapabilities | None = None


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
