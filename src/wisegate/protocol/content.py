"""Content blocks a Messages request carries (anthropic 2.10.0's ``*BlockParam`` types) and the turns
they make up (``MessageParam``).

Blocks validate as the Claude API does: a union discriminated by ``type``; a block's newer optional
fields pass along uninterpreted (``_Open``), a source's unknown fields are refused (``_Strict``).
The request around them is in ``protocol/messages.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wisegate.protocol.numbers import Boolean


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """Blocks whose newer optional fields we pass along without interpreting."""

    model_config = ConfigDict(extra="allow")


class CacheControl(_Strict):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlockParam(_Open):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class Base64ImageSource(_Strict):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class UrlSource(_Strict):
    type: Literal["url"]
    url: str


class FileSource(_Strict):
    type: Literal["file"]
    file_id: str


ImageSource = Annotated[Base64ImageSource | UrlSource | FileSource, Field(discriminator="type")]


class ImageBlockParam(_Open):
    type: Literal["image"]
    source: ImageSource
    cache_control: CacheControl | None = None


class Base64PdfSource(_Strict):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: str


class PlainTextSource(_Strict):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


class ContentSource(_Strict):
    type: Literal["content"]
    content: str | list[Annotated[TextBlockParam | ImageBlockParam, Field(discriminator="type")]]


DocumentSource = Annotated[
    Base64PdfSource | PlainTextSource | ContentSource | UrlSource | FileSource,
    Field(discriminator="type"),
]


class DocumentBlockParam(_Open):
    type: Literal["document"]
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


class SearchResultBlockParam(_Open):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlockParam]
    cache_control: CacheControl | None = None


class ToolUseBlockParam(_Open):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


ToolResultContent = Annotated[
    TextBlockParam | ImageBlockParam | DocumentBlockParam | SearchResultBlockParam,
    Field(discriminator="type"),
]


class ToolResultBlockParam(_Open):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ToolResultContent] | None = None
    is_error: Boolean | None = None
    cache_control: CacheControl | None = None


class ThinkingBlockParam(_Open):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlockParam(_Open):
    type: Literal["redacted_thinking"]
    data: str


class ServerToolBlockParam(_Open):
    """Server-tool blocks echoed back from an earlier response; kept for upstreams that understand them."""

    type: Literal[
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "advisor_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
        "mcp_tool_listing",
        "container_upload",
        "mid_conv_system",
        "tool_addition",
        "tool_removal",
    ]


class CompactionBlockParam(_Open):
    """A ``compaction`` block sent back from an earlier response: its summary stands in for the turns
    it replaced (``content: null`` is a failed compaction, which changes nothing)."""

    type: Literal["compaction"]
    content: str | None = Field(default=None, min_length=1)
    encrypted_content: str | None = None
    signature: str | None = None
    tool_changes: list[dict[str, Any]] | None = None
    cache_control: CacheControl | None = None


class FallbackBlockParam(_Open):
    """A ``fallback`` block echoed back from an earlier response: not rendered into the prompt."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)

    type: Literal["fallback"]
    from_: dict[str, Any] = Field(alias="from")
    to: dict[str, Any]
    trigger: Any = None


ContentBlockParam = Annotated[
    TextBlockParam
    | ImageBlockParam
    | DocumentBlockParam
    | SearchResultBlockParam
    | ToolUseBlockParam
    | ToolResultBlockParam
    | ThinkingBlockParam
    | RedactedThinkingBlockParam
    | CompactionBlockParam
    | FallbackBlockParam
    | ServerToolBlockParam,
    Field(discriminator="type"),
]


class MessageParam(_Strict):
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlockParam]
    # Per-turn settings of ``role: "system"`` messages (beta surface Claude Code sends).
    output_config: dict[str, Any] | None = None
    clear_at: Literal["next_user_message", "never"] | None = None

    @model_validator(mode="after")
    def _system_only_fields(self) -> MessageParam:
        if self.role != "system":
            for name in ("output_config", "clear_at"):
                if getattr(self, name) is not None:
                    raise ValueError(f'{name}: only permitted on role: "system" messages')
        return self

    def blocks(self) -> list[ContentBlockParam]:
        """The content as a list of blocks (a string is one text block)."""
        if isinstance(self.content, str):
            return [TextBlockParam(type="text", text=self.content)]
        return self.content
