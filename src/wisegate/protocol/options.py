"""Request options that choose how a Messages request is served and billed (SDK 2.10 beta surface):
``compaction``, ``fallbacks``, ``fallback_credit_token`` and ``billing_policy``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from wisegate.protocol.numbers import Integer
from wisegate.protocol.structured import OutputConfig
from wisegate.protocol.thinking import Thinking


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BillingPolicy(_Strict):
    """``billing_policy``: who is billed. Wisegate has no user profiles: only ``"self"`` (the default,
    billing the key's organization as usual) can be honoured."""

    type: Literal["billing_policy"]
    bill_to: Literal["self", "user_profile"] | None = None


class CompactionConfig(_Strict):
    """``compaction: {"type": "summarize"}``: answer with one ``compaction`` block summing up ``messages``."""

    type: Literal["summarize"]
    instructions: str | None = None

    def custom_instructions(self) -> str | None:
        """The client's summarization instructions; empty or whitespace-only counts as absent."""
        return self.instructions if self.instructions and self.instructions.strip() else None


class FallbackEntry(_Strict):
    """One model of ``fallbacks``, with the settings that replace the request's for that attempt
    (a field left out keeps the request's value; ``null`` clears it)."""

    model: str = Field(min_length=1)
    max_tokens: Integer | None = Field(default=None, ge=1)
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    speed: Literal["standard", "fast"] | None = None


class FallbackCreditToken(_Strict):
    """The object form of ``fallback_credit_token``: the token and how a failed redemption acts."""

    token: str
    mode: Literal["strict", "best_effort"] | None = None
