"""One usage record per request, and the per-minute sums the usage and cost reports read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class UsageRecord:
    request_id: str
    organization_id: str
    workspace_id: str
    api_key_id: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    service_tier: str
    stop_reason: str | None
    error_type: str | None
    streamed: bool
    latency_ms: int
    created_at: datetime
    cost_picousd: int = 0
    batch: bool = False


@dataclass(frozen=True, slots=True)
class UsageSum:
    minute: datetime  # UTC start of the minute the requests were recorded in
    workspace_id: str
    api_key_id: str
    model: str
    service_tier: str
    long_context: bool
    requests: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which usage records count: one organization, a time range, and optional id lists (empty = all)."""

    organization_id: str
    starting_at: datetime
    ending_at: datetime
    workspace_ids: Sequence[str] = ()
    api_key_ids: Sequence[str] = ()
    models: Sequence[str] = ()
    service_tiers: Sequence[str] = ()
