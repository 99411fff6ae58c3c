"""What ``wisegate serve`` checks before it starts anything (besides the settings' own values, the port,
the model files, tracing and the database, checked where they live): settings that cannot work
together, Redis. Each check
returns the problem as one line (the command prints it and exits with status 2, no traceback) or
``None``."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

from wisegate.domain.limits import build_limiter
from wisegate.settings import Settings

_REDIS_SECONDS = 5.0


def workers_problem(settings: Settings, workers: int) -> str | None:
    """More than one API process needs shared rate-limit buckets (Redis), unless limits are off."""
    if workers > 1 and settings.limits.enabled and not settings.redis_url:
        return (
            f"--workers {workers} needs the rate-limit buckets in Redis: set WISEGATE_REDIS_URL "
            "(otherwise each worker would enforce every limit on its own), or serve one worker"
        )
    return None


def redis_problem(settings: Settings) -> str | None:
    """With ``redis_url`` set, Redis must answer a ``PING`` within a few seconds."""
    if not settings.redis_url:
        return None
    from wisegate.domain.limits.resp import RespError

    async def ping() -> None:
        limiter = build_limiter(settings)
        try:
            await asyncio.wait_for(limiter.ping(), _REDIS_SECONDS)
        finally:
            await limiter.close()

    try:
        asyncio.run(ping())
    except (RespError, OSError, TimeoutError) as exc:
        reason = str(exc) or f"no answer within {_REDIS_SECONDS:g} s"
        return (
            f"cannot reach Redis at {_hide_password(settings.redis_url)}: {reason} (check WISEGATE_REDIS_URL)"
        )
    return None


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))
