"""Stream events of ``POST /v1/messages`` with ``stream: true`` and their SSE encoding.

Every backend yields these, in the order the Claude API sends them::

    message_start, (content_block_start, content_block_delta*, content_block_stop)*,
    message_delta, message_stop          (ping and error may appear anywhere)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from wisegate.protocol.messages import ContentBlock, Message, StopReason


def _absent(value: object) -> bool:
    return value is None


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ThinkingDelta(BaseModel):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class SignatureDelta(BaseModel):
    type: Literal["signature_delta"] = "signature_delta"
    signature: str


class CompactionDelta(BaseModel):
    """The whole summary of a ``compaction`` block, in one delta (the SDK replaces, never appends)."""

    type: Literal["compaction_delta"] = "compaction_delta"
    content: str | None = None
    encrypted_content: str | None = None


Delta = TextDelta | InputJsonDelta | ThinkingDelta | SignatureDelta | CompactionDelta


class MessageStart(BaseModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStart(BaseModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class ContentBlockDelta(BaseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: Delta


class ContentBlockStop(BaseModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDeltaBody(BaseModel):
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = Field(default=None, exclude_if=_absent)


class MessageDeltaUsage(BaseModel):
    """Cumulative usage at the end of the message (the SDK overwrites, never adds)."""

    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    server_tool_use: dict[str, int] | None = Field(default=None, exclude_if=_absent)
    iterations: list[dict[str, Any]] | None = Field(default=None, exclude_if=_absent)
    fallback_credit: dict[str, Any] | None = Field(default=None, exclude_if=_absent)


class MessageDelta(BaseModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDeltaBody
    usage: MessageDeltaUsage


class MessageStop(BaseModel):
    type: Literal["message_stop"] = "message_stop"


class Ping(BaseModel):
    type: Literal["ping"] = "ping"


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorBody


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | ErrorEvent
)


def encode_sse(event: StreamEvent) -> bytes:
    """``event: <type>\\ndata: <json>\\n\\n`` — the SDK dispatches on the ``event:`` line."""
    data = event.model_dump_json()
    return b"event: " + event.type.encode() + b"\ndata: " + data.encode() + b"\n\n"
