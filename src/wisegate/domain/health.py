"""Readiness (``GET /ready``): may this process be sent requests now?

Ready when the database answers, Redis answers (when the limits live there), every backend has
started (a backend may add its own check: an optional ``async def check() -> str | None`` naming
what is wrong) and the process is not draining. Each check is bounded by a timeout, so a hung
dependency reads as not ready rather than hanging the load balancer's probe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from sqlalchemy import text

from wisegate.backends.registry import BackendRegistry
from wisegate.domain.drain import Drain
from wisegate.domain.limits import Limiter
from wisegate.storage.db import Database

_CHECK_SECONDS = 2.0

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

    async def readiness(self) -> Readiness:
        checks: dict[str, str] = {}
        if self._drain.draining:
            checks["process"] = "draining: shutting down, finishing the requests in flight"
        checks["database"] = await _bounded("database", self._database())
        if self._redis:
            checks["redis"] = await _bounded("redis", self._limiter.ping())
        for name, backend in self._registry.backends.items():
            checks[f"backend:{name}"] = await _bounded(name, self._backend(backend))
        return Readiness(all(v == "ok" for v in checks.values()), checks)

    async def _database(self) -> None:
        async with self._db.read() as session:
            await session.execute(text("SELECT 1"))

    async def _backend(self, backend: object) -> None:
        if not self._registry.started:
            raise RuntimeError("not started yet")
        check = getattr(backend, "check", None)
        if check is not None:
            problem = await check()
            if problem:
                raise RuntimeError(problem)


async def _bounded(part: str, work: Awaitable[None]) -> str:
    """``"ok"``, or the failure in a few words. ``/ready`` needs no key, so the answer names the part
    and the kind of failure only; the details (addresses, messages) go to the log."""
    try:
        await asyncio.wait_for(work, _CHECK_SECONDS)
    except TimeoutError:
        log.warning("readiness check timed out", extra={"part": part})
        return f"no answer within {_CHECK_SECONDS:g} s"
    except Exception as exc:
        log.warning("readiness check failed: %s", exc, extra={"part": part})
        return f"unavailable ({type(exc).__name__})"
    return "ok"
