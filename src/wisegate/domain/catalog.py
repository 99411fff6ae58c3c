"""The models a key may use: the served models, narrowed by its workspace's allow-list.

``/v1/models``, ``/v1/messages`` and ``count_tokens`` all resolve models here, so a model outside the
allow-list looks exactly like an unknown one (404 ``model: <id>``) everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from wisegate.backends.registry import BackendRegistry, ServedModel
from wisegate.domain.keys import Principal
from wisegate.errors import NotFound
from wisegate.protocol.bounds import echo

AllowList = tuple[str, ...] | None
AllowListLookup = Callable[[str], Awaitable[AllowList]]


async def _everything(_workspace_id: str) -> AllowList:
    return None


class ModelCatalog:
    def __init__(
        self,
        registry: BackendRegistry,
        allow_list: AllowListLookup = _everything,
        cache_seconds: float = 5.0,
    ) -> None:
        self._registry = registry
        self._allow_list = allow_list
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, AllowList]] = {}

    @property
    def served(self) -> list[ServedModel]:
        """Every served model, whatever the allow-lists say."""
        return list(self._registry.models)

    def forget(self, workspace_id: str) -> None:
        """Drop a cached allow-list (after it changed)."""
        self._cache.pop(workspace_id, None)

    async def _allowed(self, principal: Principal | None) -> AllowList:
        if principal is None or principal.key.kind == "admin":
            return None
        now = time.monotonic()
        cached = self._cache.get(principal.workspace_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        allowed = await self._allow_list(principal.workspace_id)
        self._cache[principal.workspace_id] = (now + self._cache_seconds, allowed)
        return allowed

    async def visible(self, principal: Principal | None) -> list[ServedModel]:
        """The served models this principal may use, in configuration order."""
        allowed = await self._allowed(principal)
        return [m for m in self._registry.models if allowed is None or m.config.id in allowed]

    async def resolve(self, principal: Principal | None, model_id: str) -> ServedModel:
        """The served model for an id or alias; 404 ``model: <id>`` if unknown or not allowed."""
        served = self._registry.resolve(model_id)
        allowed = await self._allowed(principal)
        if allowed is not None and served.config.id not in allowed:
            raise NotFound(f"model: {echo(model_id)}")
        return served

    async def for_request(self, principal: Principal | None, model_id: str) -> ServedModel:
        """``resolve``, and 404 for a retired model (``lifecycle = "retired"``, or its ``retires_at``
        has passed): it stays in ``/v1/models`` with its lifecycle, but no longer answers."""
        served = await self.resolve(principal, model_id)
        config = served.config
        retired_on = config.retires_at if config.retires_at and _passed(config.retires_at) else None
        if config.lifecycle == "retired" or retired_on:
            when = f" on {retired_on[:10]}" if retired_on else ""
            raise NotFound(
                f"model: {echo(model_id)} — this model was retired{when}; GET /v1/models lists the models "
                "you can use"
            )
        return served


def _passed(moment: str) -> bool:
    when = datetime.fromisoformat(moment)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) <= datetime.now(UTC)
