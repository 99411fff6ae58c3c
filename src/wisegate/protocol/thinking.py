"""``thinking``: extended thinking's settings (``enabled``, ``adaptive``, ``disabled``, ``between_tools``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from wisegate.protocol.numbers import Integer


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BlockBinding(_Strict):
    """What happens when a sent-back thinking block fails the conversation check (``"error"``, the
    default, or ``"drop_block"``). Backends without thinking blocks have nothing to bind."""

    prefix_mismatch_behavior: Literal["error", "drop_block"] | None = None


ThinkingDisplay = Literal["summarized", "omitted", "updates"]


class ThinkingEnabled(_Strict):
    type: Literal["enabled"]
    budget_tokens: Integer
    display: ThinkingDisplay | None = None
    block_binding: BlockBinding | None = None


class ThinkingDisabled(_Strict):
    type: Literal["disabled"]


class ThinkingAdaptive(_Strict):
    type: Literal["adaptive"]
    display: ThinkingDisplay | None = None
    block_binding: BlockBinding | None = None


class ThinkingBetweenTools(_Strict):
    type: Literal["between_tools"]


Thinking = Annotated[
    ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive | ThinkingBetweenTools,
    Field(discriminator="type"),
]
