"""Rate limits (token buckets, in-process or Redis), monthly spend caps and prepaid credits."""

from __future__ import annotations

from wisegate.domain.limits.buckets import Bucket, Limiter, MemoryLimiter
from wisegate.domain.limits.service import (
    Admission,
    LimitService,
    LimitState,
    RateLimitExceeded,
    RateLimitSnapshot,
    SpendCapReached,
)
from wisegate.settings import Settings


def build_limiter(settings: Settings) -> Limiter:
    """Redis when ``WISEGATE_REDIS_URL`` is set (scaled mode), else in-process buckets."""
    if settings.redis_url:
        from wisegate.domain.limits.redis_store import RedisLimiter

        return RedisLimiter(settings.redis_url, settings.redis_prefix)
    return MemoryLimiter()


__all__ = [
    "Admission",
    "Bucket",
    "LimitService",
    "LimitState",
    "Limiter",
    "MemoryLimiter",
    "RateLimitExceeded",
    "RateLimitSnapshot",
    "SpendCapReached",
    "build_limiter",
]
