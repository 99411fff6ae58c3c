"""Usage tiers, their rate limits and spend caps, as configuration (``WISEGATE_LIMITS``).

The default is Anthropic's published "Tier 1-4" table (scheme A of ``shared/api-notes.md`` §10, the
2026 version): it is the scheme whose numbers are complete — advancement thresholds, monthly caps and
per-class RPM / ITPM / OTPM for every tier. The newer Start/Build/Scale scheme is published only in
part; an operator can load it, or any other table, through the same configuration.

An organization is at the highest tier whose ``advance_at_usd`` it has reached (by cumulative credit
purchases, or by cumulative spend when ``advance_by = "spend"``); below the first threshold it is at
the first tier. An operator may pin a tier per organization.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


class RateLimits(BaseModel):
    """Per-minute limits of one model class: requests, input tokens, output tokens."""

    rpm: int = Field(ge=1)
    itpm: int = Field(ge=1)
    otpm: int = Field(ge=1)


class TierConfig(BaseModel):
    name: str
    advance_at_usd: str = "0"
    monthly_spend_cap_usd: str | None = None
    count_tokens_rpm: int | None = None
    rate_limits: dict[str, RateLimits] = Field(default_factory=dict)


class LimitsConfig(BaseModel):
    """Rate limits and tier caps. ``enabled = false`` turns both off (user-set spend limits and
    prepaid credit balances are still enforced)."""

    enabled: bool = True
    advance_by: Literal["credit_purchases", "spend"] = "credit_purchases"
    model_classes: dict[str, list[str]] = Field(default_factory=lambda: dict(_CLASSES))
    tiers: list[TierConfig] = Field(default_factory=lambda: _default_tiers())
    cache_seconds: float = 5.0
    reservation_timeout_seconds: int = 900

    @model_validator(mode="after")
    def _check(self) -> LimitsConfig:
        if not self.tiers:
            raise ValueError("limits.tiers: at least one tier is required")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("limits.tiers: tier names must be unique")
        for tier in self.tiers:
            unknown = set(tier.rate_limits) - set(self.model_classes)
            if unknown:
                raise ValueError(f"limits.tiers.{tier.name}: unknown model classes {sorted(unknown)}")
        return self


_CLASSES: dict[str, list[str]] = {
    "opus": ["claude-opus-*", "claude-fable-*", "claude-mythos-*", "claude-3-opus*"],
    "sonnet": ["claude-sonnet-*", "claude-3-7-sonnet*", "claude-3-5-sonnet*"],
    "haiku": ["claude-haiku-*", "claude-3-5-haiku*", "claude-3-haiku*"],
    "other": ["*"],
}

# Models Anthropic's table does not cover (the embedded model, local upstreams) get one fixed, generous
# limit in every tier — Tier 4's Sonnet numbers — so a Claude tier never throttles them, and their
# responses still carry the rate-limit headers.
_OTHER = RateLimits(rpm=4_000, itpm=2_000_000, otpm=400_000)


def _tier(
    name: str,
    advance: str,
    cap: str | None,
    count_rpm: int,
    big: tuple[int, int, int],
    haiku: tuple[int, ...],
) -> TierConfig:
    top = RateLimits(rpm=big[0], itpm=big[1], otpm=big[2])
    return TierConfig(
        name=name,
        advance_at_usd=advance,
        monthly_spend_cap_usd=cap,
        count_tokens_rpm=count_rpm,
        rate_limits={
            "opus": top,
            "sonnet": top,
            "haiku": RateLimits(rpm=haiku[0], itpm=haiku[1], otpm=haiku[2]),
            "other": _OTHER,
        },
    )


def _default_tiers() -> list[TierConfig]:
    return [
        _tier("tier-1", "5", "100", 100, (50, 30_000, 8_000), (50, 50_000, 10_000)),
        _tier("tier-2", "40", "500", 2_000, (1_000, 450_000, 90_000), (1_000, 450_000, 90_000)),
        _tier("tier-3", "200", "1000", 4_000, (2_000, 800_000, 160_000), (2_000, 1_000_000, 200_000)),
        _tier("tier-4", "400", "200000", 8_000, (4_000, 2_000_000, 400_000), (4_000, 4_000_000, 800_000)),
    ]
