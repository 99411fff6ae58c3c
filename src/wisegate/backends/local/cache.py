"""Prompt caching for the embedded model: saved llama.cpp sequence states keyed by their exact prefix.

A request's ``cache_control`` breakpoints (and the top-level ``cache_control``, placed on the last
cacheable block) mark token offsets in its prompt. :meth:`PromptCache.plan` decides, before
generation, what is read and what is written, exactly as usage then reports it:

- **read**: the longest stored prefix among each breakpoint and the 20 block boundaries before it
  (the Claude API's lookback), so a conversation that moves its breakpoint forward each turn still
  hits the prefix stored by the previous turn. ``cache_read_input_tokens`` = its length.
- **write**: every breakpoint past the read prefix and at least ``min_tokens`` long.
  ``cache_creation_input_tokens`` = tokens from the read prefix to the last written breakpoint,
  each stretch attributed to the TTL (5m/1h) of the breakpoint that ends it.
- ``input_tokens`` = the rest, so input + creation + read = the whole prompt = ``count_tokens``.

Entries expire by TTL (a hit refreshes it) and are evicted least-recently-used once their bytes pass
``max_bytes``. The plan pins the entry it reads so it cannot be evicted before the generation thread
restores it. All methods are thread-safe: planning runs on the event loop, storing on the generation
thread.
"""

from __future__ import annotations

import hashlib
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from wisegate.protocol.messages import Usage

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
LOOKBACK_BLOCKS = 20


def prefix_key(tokens: Sequence[int]) -> bytes:
    """The cache key of a token prefix: SHA-256 of its token ids."""
    return hashlib.sha256(array("i", tokens).tobytes()).digest()


@dataclass(frozen=True, slots=True)
class Boundary:
    """The end of one content block in the prompt, in tokens; ``ttl`` is set on breakpoints."""

    tokens: int
    ttl: str | None


@dataclass(slots=True)
class Entry:
    key: bytes
    n_tokens: int
    state: bytes
    ttl: str
    expires_at: float
    pins: int = 0


@dataclass(frozen=True, slots=True)
class Write:
    n_tokens: int
    key: bytes
    ttl: str


@dataclass(slots=True)
class CachePlan:
    """What one request reads and writes; ``restore`` is pinned until :meth:`PromptCache.release`."""

    total: int
    restore: Entry | None = None
    writes: list[Write] = field(default_factory=list)
    created_5m: int = 0
    created_1h: int = 0

    @property
    def read(self) -> int:
        return self.restore.n_tokens if self.restore else 0

    def fill(self, usage: Usage) -> None:
        """Set the input side of ``usage`` as the Claude API reports it."""
        usage.cache_read_input_tokens = self.read
        usage.cache_creation.ephemeral_5m_input_tokens = self.created_5m
        usage.cache_creation.ephemeral_1h_input_tokens = self.created_1h
        usage.cache_creation_input_tokens = self.created_5m + self.created_1h
        usage.input_tokens = self.total - self.read - usage.cache_creation_input_tokens


class PromptCache:
    def __init__(self, max_bytes: int, min_tokens: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        self._clock = clock
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def plan(self, tokens: Sequence[int], boundaries: Sequence[Boundary]) -> CachePlan:
        """Decide what this prompt reads and writes (see the module docstring)."""
        plan = CachePlan(total=len(tokens))
        marks = [i for i, b in enumerate(boundaries) if b.ttl is not None]
        if not marks:
            return plan
        candidates = sorted(
            {
                boundaries[j].tokens
                for i in marks
                for j in range(max(0, i - LOOKBACK_BLOCKS), i + 1)
                if boundaries[j].tokens > 0
            },
            reverse=True,
        )
        now = self._clock()
        with self._lock:
            self._expire(now)
            for n in candidates:
                entry = self._entries.get(prefix_key(tokens[:n]))
                if entry is not None:
                    entry.pins += 1
                    entry.expires_at = now + TTL_SECONDS[entry.ttl]
                    self._entries.move_to_end(entry.key)
                    plan.restore = entry
                    break
        ttls: dict[int, str] = {}
        for i in marks:
            n, ttl = boundaries[i].tokens, boundaries[i].ttl or "5m"
            if n > plan.read and n >= self.min_tokens:
                ttls[n] = "1h" if "1h" in (ttl, ttls.get(n)) else ttl
        previous = plan.read
        for n in sorted(ttls):
            plan.writes.append(Write(n, prefix_key(tokens[:n]), ttls[n]))
            if ttls[n] == "1h":
                plan.created_1h += n - previous
            else:
                plan.created_5m += n - previous
            previous = n
        return plan

    def release(self, plan: CachePlan) -> None:
        """Unpin what ``plan`` read (once restored, or when the request ends without running)."""
        with self._lock:
            entry, plan.restore = plan.restore, None
            if entry is not None:
                entry.pins -= 1

    def put(self, write: Write, state: bytes) -> None:
        """Store the state saved for ``write``, evicting least-recently-used entries to fit."""
        if len(state) > self.max_bytes:
            return
        now = self._clock()
        with self._lock:
            old = self._entries.pop(write.key, None)
            if old is not None:
                self._bytes -= len(old.state)
            entry = Entry(write.key, write.n_tokens, state, write.ttl, now + TTL_SECONDS[write.ttl])
            self._entries[write.key] = entry
            self._bytes += len(state)
            self._expire(now)
            for key in list(self._entries):
                if self._bytes <= self.max_bytes:
                    break
                victim = self._entries[key]
                if victim.pins == 0 and victim is not entry:
                    self._drop(key)

    def _expire(self, now: float) -> None:
        for key, entry in list(self._entries.items()):
            if entry.expires_at <= now and entry.pins == 0:
                self._drop(key)

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.state)
