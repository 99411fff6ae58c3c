"""Backend types by name (built-ins + entry points ``wisegate.backends``) and model id → backend routing."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib.metadata import entry_points
from typing import Any

from wisegate.backends.base import Backend, ModelRoute
from wisegate.backends.routing import CircuitBreaker, Deployment, routed
from wisegate.backends.upstream import KeyPool
from wisegate.errors import NotFound
from wisegate.protocol.bounds import echo
from wisegate.settings import BackendConfig, ModelConfig

BackendFactory = Callable[[str, dict[str, Any]], Backend]


def _local(name: str, options: dict[str, Any]) -> Backend:
    from wisegate.backends.local import LocalBackend

    return LocalBackend(name, options)


def _scripted(name: str, options: dict[str, Any]) -> Backend:
    from wisegate.backends.scripted import ScriptedBackend

    return ScriptedBackend(name, options)


def _anthropic(name: str, options: dict[str, Any]) -> Backend:
    from wisegate.backends.anthropic import AnthropicBackend

    return AnthropicBackend(name, options)


def _openai(name: str, options: dict[str, Any]) -> Backend:
    from wisegate.backends.openai_compat import OpenAICompatBackend

    return OpenAICompatBackend(name, options)


def _bedrock(name: str, options: dict[str, Any]) -> Backend:
    from wisegate.backends.bedrock import BedrockBackend

    return BedrockBackend(name, options)


def _vertex(name: str, options: dict[str, Any]) -> Backend:
    from wisegate.backends.vertex import VertexBackend

    return VertexBackend(name, options)


BUILTIN_TYPES: dict[str, BackendFactory] = {
    "local": _local,
    "scripted": _scripted,
    "anthropic": _anthropic,
    "openai": _openai,
    "bedrock": _bedrock,
    "vertex": _vertex,
}


def backend_types() -> dict[str, BackendFactory]:
    """Built-in backend types plus those third-party packages register as entry points."""
    types = dict(BUILTIN_TYPES)
    for ep in entry_points(group="wisegate.backends"):
        types.setdefault(ep.name, ep.load())
    return types


@dataclass(frozen=True, slots=True)
class ServedModel:
    config: ModelConfig
    backend: Backend
    route: ModelRoute


def _is_pattern(alias: str) -> bool:
    return any(c in alias for c in "*?[")


class BackendRegistry:
    """Builds the configured backends and resolves model ids and aliases to them."""

    def __init__(
        self,
        backends: dict[str, BackendConfig],
        models: Iterable[ModelConfig],
        instances: dict[str, Backend] | None = None,
    ) -> None:
        types = backend_types()
        self.started = False  # every backend's start() returned (``/ready``)
        self.backends: dict[str, Backend] = dict(instances or {})
        for name, config in backends.items():
            if name in self.backends:
                continue
            if config.type not in types:
                raise ValueError(f"backend {name!r} has unknown type {config.type!r}; known: {sorted(types)}")
            self.backends[name] = types[config.type](name, config.options)
        self.models: list[ServedModel] = []
        self._by_id: dict[str, ServedModel] = {}
        self._patterns: list[tuple[str, ServedModel]] = []
        for model in models:
            served = ServedModel(
                model,
                self._backend_for(model),
                ModelRoute(
                    public_id=model.id,
                    upstream_model=model.upstream_model or model.id,
                    max_input_tokens=model.max_input_tokens,
                    max_output_tokens=model.max_output_tokens,
                ),
            )
            self.models.append(served)
            for model_id in (model.id, *model.aliases):
                if _is_pattern(model_id):
                    self._patterns.append((model_id, served))
                else:
                    self._by_id[model_id] = served

    def _backend_for(self, model: ModelConfig) -> Backend:
        """The model's backend; routed (retries, fallback, breaker) when it has deployments or is remote."""
        configs = model.deployment_list()
        single = self.backends[configs[0].backend]
        if not model.deployments and not getattr(single, "remote", False):
            return single
        deployments = [
            Deployment(
                backend=self.backends[d.backend],
                upstream_model=d.upstream_model or model.upstream_model or model.id,
                weight=d.weight,
                priority=index if d.priority is None else d.priority,
                keys=KeyPool(d.api_keys),
                breaker=CircuitBreaker(
                    model.routing.breaker_failures, model.routing.breaker_cooldown_seconds
                ),
            )
            for index, d in enumerate(configs)
        ]
        return routed(model.id, deployments, model.routing)

    def resolve(self, model_id: str) -> ServedModel:
        """The served model for an id or alias; 404 ``not_found_error`` naming it otherwise.

        Exact ids and aliases win; then alias patterns (``claude-*``, ``claude-?-haiku*``: shell-style,
        case-sensitive) are tried in configuration order.
        """
        served = self._by_id.get(model_id)
        if served is not None:
            return served
        for pattern, candidate in self._patterns:
            if fnmatchcase(model_id, pattern):
                return candidate
        raise NotFound(f"model: {echo(model_id)}")

    def preflight(self) -> list[str]:
        """Problems that would stop a backend from starting (a backend may define ``preflight() ->
        str | None``), found before the server binds its port and loads models."""
        problems = []
        for backend in self.backends.values():
            check = getattr(backend, "preflight", None)
            problem = check() if check is not None else None
            if problem:
                problems.append(problem)
        return problems

    async def start(self) -> None:
        for backend in self.backends.values():
            await backend.start()
        self.started = True

    async def close(self) -> None:
        for backend in self.backends.values():
            await backend.close()
