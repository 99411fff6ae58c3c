"""PromptCache planning, TTL, LRU-by-bytes eviction and pinning, with a fake clock."""

from __future__ import annotations

from wisegate.backends.local.cache import Boundary, PromptCache, Write
from wisegate.protocol.messages import Usage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


TOKENS = list(range(100))


def store(cache: PromptCache, write: Write, size: int = 10) -> None:
    cache.put(write, b"x" * size)


def test_plan_writes_breakpoints_and_splits_ttls() -> None:
    cache = PromptCache(max_bytes=1000, min_tokens=10)
    plan = cache.plan(TOKENS, [Boundary(5, "1h"), Boundary(20, "1h"), Boundary(30, None), Boundary(60, "5m")])
    # 5 tokens is below the minimum: not written, so its tokens count toward the next stretch.
    assert [(w.n_tokens, w.ttl) for w in plan.writes] == [(20, "1h"), (60, "5m")]
    usage = Usage()
    plan.fill(usage)
    assert usage.cache_creation.ephemeral_1h_input_tokens == 20
    assert usage.cache_creation.ephemeral_5m_input_tokens == 40
    assert usage.cache_creation_input_tokens == 60 and usage.cache_read_input_tokens == 0
    assert usage.input_tokens == 40


def test_no_breakpoint_no_plan_work() -> None:
    cache = PromptCache(max_bytes=1000, min_tokens=1)
    plan = cache.plan(TOKENS, [Boundary(50, None)])
    assert plan.writes == [] and plan.restore is None
    usage = Usage()
    plan.fill(usage)
    assert usage.input_tokens == 100


def test_read_the_longest_stored_prefix_with_lookback() -> None:
    cache = PromptCache(max_bytes=1000, min_tokens=1)
    first = cache.plan(TOKENS, [Boundary(30, "5m")])
    store(cache, first.writes[0])
    # A later turn: the breakpoint moved to 80, the old one (30) is a plain block boundary now.
    later = cache.plan(TOKENS, [Boundary(10, None), Boundary(30, None), Boundary(80, "5m")])
    assert later.read == 30 and [w.n_tokens for w in later.writes] == [80]
    usage = Usage()
    later.fill(usage)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens, usage.input_tokens) == (
        30,
        50,
        20,
    )
    cache.release(later)
    # A different prefix of the same length does not hit.
    other = cache.plan([7, *TOKENS[1:]], [Boundary(30, "5m")])
    assert other.read == 0


def test_lookback_is_twenty_blocks() -> None:
    cache = PromptCache(max_bytes=1000, min_tokens=1)
    store(cache, cache.plan(TOKENS, [Boundary(5, "5m")]).writes[0])
    near = [Boundary(5, None)] + [Boundary(6 + i, None) for i in range(19)] + [Boundary(90, "5m")]
    assert cache.plan(TOKENS, near).read == 5
    far = [Boundary(5, None)] + [Boundary(6 + i, None) for i in range(20)] + [Boundary(90, "5m")]
    assert cache.plan(TOKENS, far).read == 0


def test_ttl_expires_and_a_hit_refreshes_it() -> None:
    clock = Clock()
    cache = PromptCache(max_bytes=1000, min_tokens=1, clock=clock)
    write = cache.plan(TOKENS, [Boundary(40, "5m")]).writes[0]
    store(cache, write)
    clock.now += 299
    hit = cache.plan(TOKENS, [Boundary(40, "5m")])
    assert hit.read == 40
    cache.release(hit)
    clock.now += 299  # 598 s after writing, 299 s after the refreshing hit
    again = cache.plan(TOKENS, [Boundary(40, "5m")])
    assert again.read == 40
    cache.release(again)
    clock.now += 301
    assert cache.plan(TOKENS, [Boundary(40, "5m")]).read == 0
    assert len(cache) == 0 and cache.size_bytes == 0


def test_one_hour_entries_outlive_five_minutes() -> None:
    clock = Clock()
    cache = PromptCache(max_bytes=1000, min_tokens=1, clock=clock)
    store(cache, cache.plan(TOKENS, [Boundary(40, "1h")]).writes[0])
    clock.now += 3000
    assert cache.plan(TOKENS, [Boundary(40, "1h")]).read == 40


def test_memory_bound_evicts_least_recently_used_but_not_pinned() -> None:
    cache = PromptCache(max_bytes=30, min_tokens=1)
    writes = [cache.plan(TOKENS, [Boundary(n, "5m")]).writes[0] for n in (10, 20, 30)]
    for write in writes:
        store(cache, write)
    assert cache.size_bytes == 30
    pinned = cache.plan(TOKENS, [Boundary(10, "5m")])  # oldest, but now in use and most recent
    assert pinned.read == 10
    store(cache, cache.plan(TOKENS, [Boundary(40, "5m")]).writes[0])
    assert cache.size_bytes == 30
    assert cache.plan(TOKENS, [Boundary(20, "5m")]).read == 0  # evicted
    assert cache.plan(TOKENS, [Boundary(10, None), Boundary(10, "5m")]).read == 10
    cache.release(pinned)
    store(cache, Write(99, b"k", "5m"), size=31)  # larger than the whole budget: not stored
    assert cache.size_bytes == 30
