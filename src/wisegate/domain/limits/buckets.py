"""Token buckets, continuously refilled, behind one ``Limiter`` protocol; the in-process store.

A bucket holds up to ``capacity`` units (requests or tokens per minute) and refills at
``capacity / 60`` units per second. ``take`` checks every demanded bucket and takes from all of them,
or from none: a request is admitted only when every limit it touches has room for it now.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Dimension = Literal["requests", "input-tokens", "output-tokens"]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One limit: ``key`` identifies its state in the store, the rest says what to tell people."""

    key: str
    dimension: Dimension
    scope: Literal["organization", "workspace"]
    scope_id: str
    model_class: str
    capacity: int

    @property
    def rate(self) -> float:
        """Units refilled per second."""
        return self.capacity / 60.0


Demand = tuple[Bucket, int]


@dataclass(frozen=True, slots=True)
class Level:
    """A bucket's content after a take (or now, when the take was refused)."""

    bucket: Bucket
    remaining: float


@dataclass(frozen=True, slots=True)
class Take:
    admitted: bool
    levels: list[Level]
    now: float
    failed: Bucket | None = None
    retry_after: float = 0.0


class Limiter(Protocol):
    async def take(self, demands: Sequence[Demand]) -> Take:
        """Take every demand, or none; on refusal name the bucket that needs the longest wait."""
        ...

    async def give_back(self, demands: Sequence[Demand]) -> None:
        """Return units (an unused reservation); a bucket never exceeds its capacity."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def ping(self) -> None:
        """Raise unless the store answers (``/ready``); the in-process store always does."""
        ...


def decide(
    demands: Sequence[Demand], levels: Sequence[float], now: float, admitted: bool | None = None
) -> Take:
    """The outcome of a take given each bucket's level before it (shared by both stores);
    ``admitted`` is the store's own verdict when it made one."""
    failed: Bucket | None = None
    wait = 0.0
    for (bucket, amount), level in zip(demands, levels, strict=True):
        need = (amount - level) / bucket.rate
        if (level < amount or admitted is False) and (failed is None or need > wait):
            failed, wait = bucket, max(0.0, need)
    if admitted is True:
        failed = None
    if failed is not None:
        return Take(
            False, [Level(b, lv) for (b, _), lv in zip(demands, levels, strict=True)], now, failed, wait
        )
    after = [Level(b, lv - amount) for (b, amount), lv in zip(demands, levels, strict=True)]
    return Take(True, after, now)


class MemoryLimiter:
    """Buckets in this process's memory: the embedded default. Atomic because it never awaits."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._state: dict[str, tuple[float, float]] = {}

    def _level(self, bucket: Bucket, now: float) -> float:
        state = self._state.get(bucket.key)
        if state is None:
            return float(bucket.capacity)
        level, at = state
        return min(float(bucket.capacity), level + max(0.0, now - at) * bucket.rate)

    async def take(self, demands: Sequence[Demand]) -> Take:
        now = self._clock()
        result = decide(demands, [self._level(b, now) for b, _ in demands], now)
        if result.admitted:
            for level in result.levels:
                self._state[level.bucket.key] = (level.remaining, now)
        return result

    async def give_back(self, demands: Sequence[Demand]) -> None:
        now = self._clock()
        for bucket, amount in demands:
            level = min(float(bucket.capacity), self._level(bucket, now) + amount)
            self._state[bucket.key] = (level, now)

    async def close(self) -> None:
        self._state.clear()

    async def ping(self) -> None:
        return None
