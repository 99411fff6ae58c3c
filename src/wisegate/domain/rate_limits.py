"""The Admin API's rate limits: the organization's (its tier's, per model class) and a workspace's lower
ones (``/v1/organizations/rate_limits``, ``/v1/organizations/workspaces/{id}/rate_limits``).

Wisegate limits Messages requests per **model class** (``WISEGATE_LIMITS``: ``opus``, ``sonnet``,
``haiku``, ``other`` by default) in three dimensions. Each class is one rate-limit entry of group type
``model_group``: entry id ``ratelimit_<class>``, group id ``rlg_<class>``, limiter types
``requests_per_minute``, ``input_tokens_per_minute`` and ``output_tokens_per_minute``. Other group types
(batch, files, skills, token counting, web search) have no separate limits here and list nothing.

Overrides are stored through :class:`BillingAccounts`, as the console's Limits page and
``wisegate limits workspace-rate`` store them (there, a blank dimension means no override).
"""

from __future__ import annotations

from dataclasses import dataclass

from wisegate.domain.catalog import ModelCatalog
from wisegate.domain.limits import LimitService
from wisegate.domain.limits.accounts import NO_LIMIT, BillingAccounts
from wisegate.domain.scope import Scope
from wisegate.domain.tenancy import TenancyService
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.bounds import echo

LIMITERS = {
    "requests_per_minute": "rpm",
    "input_tokens_per_minute": "itpm",
    "output_tokens_per_minute": "otpm",
}
ENTRY_PREFIX = "ratelimit_"


@dataclass(frozen=True, slots=True)
class RateLimitEntry:
    """One model class: its organization limits (limiter type → value) and the models in it."""

    model_class: str
    limits: dict[str, int]
    models: list[str]

    @property
    def id(self) -> str:
        return ENTRY_PREFIX + self.model_class


@dataclass(frozen=True, slots=True)
class WorkspaceLimitValue:
    type: str
    value: int
    org_limit: int | None
    overridden: bool


@dataclass(frozen=True, slots=True)
class WorkspaceRateLimitEntry:
    entry: RateLimitEntry
    workspace_id: str
    limits: list[WorkspaceLimitValue]


class RateLimitService:
    def __init__(
        self, limits: LimitService, billing: BillingAccounts, tenancy: TenancyService, catalog: ModelCatalog
    ) -> None:
        self._limits = limits
        self._billing = billing
        self._tenancy = tenancy
        self._catalog = catalog

    def _models_of(self, model_class: str) -> list[str]:
        names: list[str] = []
        for served in self._catalog.served:
            if self._limits.model_class(served.config.id) == model_class:
                names.append(served.config.id)
                names += [a for a in served.config.aliases if not any(c in a for c in "*?[")]
        return names

    async def organization(
        self, scope: Scope, *, group_type: str | None = None, model: str | None = None
    ) -> list[RateLimitEntry]:
        """The organization's entries at its current tier, in configuration order."""
        if group_type not in (None, "model_group"):
            return []
        if not self._limits.config.enabled:
            entries: list[RateLimitEntry] = []
        else:
            tier = self._limits.tier_of(await self._limits.account(scope.organization_id))
            entries = [
                RateLimitEntry(
                    name,
                    {t: getattr(tier.rate_limits[name], dim) for t, dim in LIMITERS.items()},
                    self._models_of(name),
                )
                for name in self._limits.config.model_classes
                if name in tier.rate_limits
            ]
        if model is not None:
            entries = [e for e in entries if model in e.models]
            if not entries:
                raise NotFound(f"model: no rate limits for model '{echo(model)}' in this organization")
        return entries

    async def _entry(self, scope: Scope, rate_limit_id: str) -> RateLimitEntry:
        for entry in await self.organization(scope):
            if entry.id == rate_limit_id:
                return entry
        raise NotFound(f"rate limit {echo(rate_limit_id)} not found")

    async def workspace(
        self,
        scope: Scope,
        workspace_id: str,
        *,
        group_type: str | None = None,
        include_inherited: bool = False,
    ) -> list[WorkspaceRateLimitEntry]:
        """A workspace's overrides (and, with ``include_inherited``, the organization values it inherits)."""
        await self._tenancy.get_workspace(scope, workspace_id)
        stored = (await self._limits.billing.workspace_limits(workspace_id)).rate_limits or {}
        result = []
        for entry in await self.organization(scope, group_type=group_type):
            own = stored.get(entry.model_class) or {}
            values = []
            for limiter, dim in LIMITERS.items():
                override = own.get(dim)
                org = entry.limits[limiter]
                if override is not None and override < NO_LIMIT:
                    values.append(WorkspaceLimitValue(limiter, override, org, True))
                elif include_inherited:
                    values.append(WorkspaceLimitValue(limiter, org, org, False))
            if values:
                result.append(WorkspaceRateLimitEntry(entry, workspace_id, values))
        return result

    async def set_workspace(
        self, scope: Scope, workspace_id: str, rate_limit_id: str, changes: dict[str, int | None]
    ) -> WorkspaceRateLimitEntry:
        """Set (a value) or clear (``None``) the workspace's override of each named limiter type."""
        scope.require_admin()
        view = await self._tenancy.get_workspace(scope, workspace_id)
        if view.workspace.archived_at is not None:
            raise InvalidRequest(f"workspace {workspace_id} is archived")
        entry = await self._entry(scope, rate_limit_id)
        unknown = [t for t in changes if t not in LIMITERS]
        if unknown:
            raise InvalidRequest(
                f"limits: limiter type '{echo(unknown[0])}' is not limited by Wisegate; use "
                f"{', '.join(LIMITERS)}"
            )
        for limiter, value in changes.items():
            if value is not None and value < 1:
                raise InvalidRequest(f"limits: {limiter} must be at least 1, got {value}")
        await self.store(scope, workspace_id, entry.model_class, {LIMITERS[t]: v for t, v in changes.items()})
        found = [
            w
            for w in await self.workspace(scope, workspace_id, include_inherited=True)
            if w.entry.id == entry.id
        ]
        if found:
            return found[0]
        return WorkspaceRateLimitEntry(entry, workspace_id, [])

    async def store(
        self, scope: Scope, workspace_id: str, model_class: str, changes: dict[str, int | None]
    ) -> None:
        """Merge ``changes`` (``rpm``/``itpm``/``otpm`` → value, or None to clear) into the workspace's
        overrides of ``model_class``; dimensions not named keep theirs."""
        current = (await self._limits.billing.workspace_limits(workspace_id)).rate_limits or {}
        own: dict[str, int | None] = {
            dim: v if (v := current.get(model_class, {}).get(dim)) is not None and v < NO_LIMIT else None
            for dim in LIMITERS.values()
        }
        own.update(changes)
        await self._billing.set_workspace_rates(scope.organization_id, workspace_id, model_class, own)
