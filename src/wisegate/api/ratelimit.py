"""The ``anthropic-ratelimit-*`` response headers, from the limiter's snapshot of a request."""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime

from wisegate.domain.limits import LimitState, RateLimitSnapshot
from wisegate.protocol.resources import rfc3339


def _reset(state: LimitState) -> str:
    """RFC 3339, whole seconds, rounded up: the moment the bucket is full again."""
    return _moment(math.ceil(state.reset_at))


@functools.lru_cache(maxsize=64)
def _moment(second: int) -> str:  # the same few seconds on every response of a busy second
    return rfc3339(datetime.fromtimestamp(second, UTC))


def _remaining(dimension: str, state: LimitState) -> int:
    # Requests are exact (rounded down); token counts are rounded to the nearest thousand, as Anthropic does.
    if dimension == "requests":
        return int(state.remaining)
    return int(round(state.remaining / 1000.0)) * 1000


def rate_limit_headers(snapshot: RateLimitSnapshot | None) -> dict[str, str]:
    """``-limit``, ``-remaining``, ``-reset`` for requests, input and output tokens, and ``tokens``
    (whichever of input and output tokens has less left)."""
    if snapshot is None:
        return {}
    headers: dict[str, str] = {}
    states = dict(snapshot.states)
    tokens = [states[d] for d in ("input-tokens", "output-tokens") if d in states]
    if tokens:
        states["tokens"] = min(tokens, key=lambda s: s.remaining)
    for dimension, state in states.items():
        prefix = f"anthropic-ratelimit-{dimension}"
        headers[f"{prefix}-limit"] = str(state.limit)
        headers[f"{prefix}-remaining"] = str(_remaining(dimension, state))
        headers[f"{prefix}-reset"] = _reset(state)
    return headers
