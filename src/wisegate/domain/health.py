"""Readiness (``GET /ready``): may this process be sent requests now?

Ready when the database answers, Redis answers (when the limits live there), every backend has
started (a backend may add its own check: an optional ``async def check() -> str | None`` naming
what is wrong) and the process is not draining. Each check is bounded by a timeout, so a hung
dependency reads as not ready rather than hanging the load balancer's probe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from wisegate.backends.registry import BackendRegistry
from wisegate.domain.drain import Drain
from wisegate.domain.limits import Limiter
from wisegate.storage.db import Database, make_probe_engine

_CHECK_SECONDS = 2.0
_FRESH_SECONDS = 0.25  # results reused for this long

log = logging.getLogger("wisegate.health")


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    checks: dict[str, str]  # part → "ok" or what is wrong with it


class HealthService:
    def __init__(
        self, db: Database, limiter: Limiter, registry: BackendRegistry, drain: Drain, *, redis: bool
    ) -> None:
        self._db, self._limiter, self._registry, self._drain = db, limiter, registry, drain
        self._redis = redis
        self._probe: AsyncEngine | None = None
        self._checking: asyncio.Task[dict[str, str]] | None = None
        self._checked: tuple[float, dict[str, str]] | None = None

    async def readiness(self) -> Readiness:
        """The checks' results, at most ``_FRESH_SECONDS`` old; concurrent callers share one run
        (several load balancers probing every node must not multiply the work)."""
        now = time.monotonic()
        if self._checked is not None and now - self._checked[0] < _FRESH_SECONDS:
            checks = dict(self._checked[1])
        else:
            if self._checking is None or self._checking.done():
                self._checking = asyncio.create_task(self._run_checks())
            checks = dict(await asyncio.shield(self._checking))
            self._checked = (time.monotonic(), checks)
        if self._drain.draining:  # never cached: the drain shows at once
            checks = {"process": "draining: shutting down, finishing the requests in flight", **checks}
        return Readiness(all(v == "ok" for v in checks.values()), checks)

    async def close(self) -> None:
        if self._probe is not None:
            await self._probe.dispose()

    async def _run_checks(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        checks["database"] = await _bounded("database", self._database())
        if self._redis:
            checks["redis"] = await _bounded("redis", self._limiter.ping())
        for name, backend in self._registry.backends.items():
            checks[f"backend:{name}"] = await _bounded(name, self._backend(backend))
        return checks

    async def _database(self) -> None:
        if self._probe is None:
            self._probe = make_probe_engine(self._db.url)
        async with self._probe.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def _backend(self, backend: object) -> None:
        if not self._registry.started:
            raise RuntimeError("not started yet")
        check = getattr(backend, "check", None)
        if check is not None:
            problem = await check()
            if problem:
                raise BackendNotReady(problem)


class BackendNotReady(Exception):
    """What a backend's own ``check()`` named: shown as is (a backend words it for a keyless probe)."""


async def _bounded(part: str, work: Awaitable[None]) -> str:
    """``"ok"``, or the failure in a few words. ``/ready`` needs no key, so the answer names the part
    and the kind of failure only; the details (addresses, messages) go to the log."""
    try:
        await asyncio.wait_for(work, _CHECK_SECONDS)
    except TimeoutError:
        log.warning("readiness check timed out", extra={"part": part})
        return f"no answer within {_CHECK_SECONDS:g} s"
    except BackendNotReady as exc:
        log.warning("readiness check failed: %s", exc, extra={"part": part})
        return str(exc)
    except Exception as exc:
        log.warning("readiness check failed: %s", exc, extra={"part": part})
        return f"unavailable ({type(exc).__name__})"
    return "ok"
