"""Routing one model over its deployments: retries with backoff, fallback, timeouts, circuit breakers.

For each request the deployments are ordered by ``priority`` (default: their position), equal
priorities shuffled by ``weight``; deployments whose breaker is open are skipped (all of them
cooling: 529 ``overloaded_error`` with ``retry-after``). An attempt that fails
before the answer starts (429, 529, 5xx, timeout, connection failure) is retried on the same
deployment with exponential backoff — waiting at least the upstream's ``retry-after`` when that is
short enough — and then the next deployment is tried. Errors that are the client's (400 …) are
answered at once. Nothing is retried once the answer started: the first event (typed path) or the
response head (relay) is the point of no return.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from wisegate.backends.base import (
    Backend,
    BackendItem,
    Capabilities,
    ModelRoute,
    RelayRequest,
    RelayResponse,
    relay_of,
)
from wisegate.backends.upstream import KeyPool, is_fallback, is_retryable
from wisegate.errors import ApiError, GatewayTimeout, Overloaded
from wisegate.protocol.messages import CountTokensRequest, MessagesRequest, Usage
from wisegate.settings import RoutingConfig
from wisegate.telemetry import metrics

log = logging.getLogger("wisegate.routing")
T = TypeVar("T")


@dataclass(slots=True)
class CircuitBreaker:
    """Opens after ``failures`` consecutive failures, for ``cooldown`` seconds; one success closes it."""

    failures: int
    cooldown: float
    clock: Callable[[], float] = time.monotonic
    consecutive: int = 0
    open_until: float = 0.0

    def is_open(self) -> bool:
        return self.open_until > self.clock()

    def success(self) -> None:
        self.consecutive = 0
        self.open_until = 0.0

    def failure(self) -> None:
        self.consecutive += 1
        if self.consecutive >= self.failures:
            self.open_until = self.clock() + self.cooldown


@dataclass(slots=True)
class Deployment:
    backend: Backend
    upstream_model: str
    weight: float = 1.0
    priority: int = 0
    keys: KeyPool = field(default_factory=lambda: KeyPool([]))
    breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker(5, 30.0))

    def route(self, base: ModelRoute) -> ModelRoute:
        return replace(base, upstream_model=self.upstream_model, api_key=self.keys.next())

    @property
    def label(self) -> str:
        return f"{self.backend.name}/{self.upstream_model}"


class RoutedBackend:
    """A backend made of deployments; used for models with ``deployments`` or a remote backend."""

    def __init__(
        self,
        name: str,
        deployments: Sequence[Deployment],
        policy: RoutingConfig,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not deployments:
            raise ValueError(f"model {name!r} has no deployments")
        self.name = name
        self.deployments = list(deployments)
        self.policy = policy
        self.capabilities: Capabilities = deployments[0].backend.capabilities
        self._sleep = sleep

    async def start(self) -> None:
        return None  # the registry starts the underlying backends

    async def close(self) -> None:
        return None

    def order(self) -> list[Deployment]:
        """This request's try order: priority, then weighted shuffle (cooling deployments are skipped)."""
        if len(self.deployments) == 1:
            return self.deployments
        groups: dict[int, list[Deployment]] = {}
        for deployment in self.deployments:
            groups.setdefault(deployment.priority, []).append(deployment)
        ordered: list[Deployment] = []
        for priority in sorted(groups):
            pool = list(groups[priority])
            while pool:
                pick = random.choices(pool, weights=[d.weight for d in pool])[0] if len(pool) > 1 else pool[0]
                ordered.append(pick)
                pool.remove(pick)
        return ordered

    def _backoff(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before the next attempt on the same deployment; None: move on instead."""
        delay: float = min(self.policy.max_backoff_seconds, self.policy.backoff_seconds * (2**attempt))
        delay *= random.uniform(0.5, 1.0)
        if retry_after is not None:
            if retry_after > self.policy.max_retry_after_seconds:
                return None
            delay = max(delay, retry_after)
        return delay

    async def _attempts(self, base: ModelRoute, call: Callable[[Deployment, ModelRoute], Awaitable[T]]) -> T:
        last: ApiError | None = None
        cooling: list[float] = []
        for deployment in self.order():
            if deployment.breaker.is_open():
                cooling.append(deployment.breaker.open_until - deployment.breaker.clock())
                continue
            for attempt in range(self.policy.retries + 1):
                metrics.UPSTREAM_ATTEMPTS.labels(deployment.label).inc()
                if attempt:
                    metrics.UPSTREAM_RETRIES.labels(deployment.label).inc()
                try:
                    async with asyncio.timeout(self.policy.timeout_seconds):
                        result = await call(deployment, deployment.route(base))
                except TimeoutError:
                    error: ApiError = GatewayTimeout(
                        f"The upstream did not start answering within {self.policy.timeout_seconds:g} s."
                    )
                except ApiError as exc:
                    error = exc
                else:
                    if deployment.breaker.consecutive:
                        metrics.BREAKER_OPEN.labels(deployment.label).set(0)
                    deployment.breaker.success()
                    return result
                if not is_fallback(error):
                    raise error
                deployment.breaker.failure()
                metrics.UPSTREAM_FAILURES.labels(deployment.label, error.type).inc()
                if deployment.breaker.is_open():
                    metrics.BREAKER_OPEN.labels(deployment.label).set(1)
                last = error
                log.warning(
                    "deployment %s failed (%s, attempt %d)",
                    deployment.label,
                    error.type,
                    attempt + 1,
                    extra={"deployment": deployment.label, "error_type": error.type},
                )
                if not is_retryable(error) or attempt == self.policy.retries or deployment.breaker.is_open():
                    break
                delay = self._backoff(attempt, error.retry_after)
                if delay is None:
                    break
                await self._sleep(delay)
        if last is None:
            raise Overloaded(
                f"Every deployment of {self.name} is cooling down after failures; retry later.",
                retry_after=min(cooling) if cooling else None,
            )
        raise last

    async def stream(
        self, request: MessagesRequest, route: ModelRoute, *, batch: bool = False
    ) -> AsyncGenerator[BackendItem]:
        async def first(
            deployment: Deployment, r: ModelRoute
        ) -> tuple[list[BackendItem], AsyncGenerator[BackendItem]]:
            """A deployment's stream up to its first event (usage reports before it included)."""
            items = deployment.backend.stream(request, r, batch=batch)
            head: list[BackendItem] = []
            try:
                while not head or isinstance(head[-1], Usage):
                    head.append(await items.__anext__())
                return head, items
            except StopAsyncIteration:
                raise ApiError(f"{deployment.label} produced no response") from None
            except BaseException:
                await items.aclose()
                raise

        head, items = await self._attempts(route, first)
        try:
            for item in head:
                yield item
            async for item in items:
                yield item
        finally:
            await items.aclose()

    async def count_tokens(self, request: CountTokensRequest | MessagesRequest, route: ModelRoute) -> int:
        async def call(deployment: Deployment, r: ModelRoute) -> int:
            return await deployment.backend.count_tokens(request, r)

        return await self._attempts(route, call)


class RoutedRelayBackend(RoutedBackend):
    """A routed backend whose every deployment can relay bytes (see ``RawRelay``)."""

    async def relay(self, request: RelayRequest, route: ModelRoute) -> RelayResponse:
        async def call(deployment: Deployment, r: ModelRoute) -> RelayResponse:
            backend = relay_of(deployment.backend)
            assert backend is not None
            return await backend.relay(request, r)

        return await self._attempts(route, call)


def routed(name: str, deployments: Sequence[Deployment], policy: RoutingConfig) -> RoutedBackend:
    """A ``RoutedRelayBackend`` when every deployment relays bytes, else a ``RoutedBackend``."""
    if all(relay_of(d.backend) is not None for d in deployments):
        return RoutedRelayBackend(name, deployments, policy)
    return RoutedBackend(name, deployments, policy)
