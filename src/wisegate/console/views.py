"""The usage dashboard, API keys and workspaces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from starlette.responses import Response

from wisegate.console.charts import stacked_bars
from wisegate.console.web import Operator, page, redirect
from wisegate.domain.pricing import format_usd
from wisegate.domain.reports import ReportQuery
from wisegate.domain.roles import Permission as P
from wisegate.domain.scope import Scope
from wisegate.domain.tenancy import WorkspaceView, key_not_found
from wisegate.errors import InvalidRequest, PermissionDenied
from wisegate.protocol.bounds import echo

RANGES = (7, 14, 31)


def _days(op: Operator) -> int:
    raw = op.request.query_params.get("days", "14")
    return int(raw) if raw in {str(r) for r in RANGES} else 14


@page()
async def usage(op: Operator) -> Response:
    """``/console``: the usage dashboard, or the first page the viewer's role opens."""
    if op.allows(P.READ_USAGE) or op.allows(P.READ_BILLING):
        return await _usage(op)
    first = op.nav[0][1] if op.nav else "/console/account"
    return redirect(op.request, first)


async def _usage(op: Operator) -> Response:
    """Tokens and cost per day by model (stacked SVG bars), and totals by model, for the last N days.

    Organization-wide for billing and admins; else one of the workspaces whose usage the viewer sees."""
    days = _days(op)
    org_wide = op.allows(P.READ_BILLING)
    visible = set(op.workspaces_allowing(P.READ_USAGE))
    workspaces = [
        w
        for w in await op.services.tenancy.list_workspaces(op.scope, include_archived=True)
        if org_wide or w.workspace.id in visible
    ]
    workspace_id = op.request.query_params.get("workspace_id") or None
    if workspace_id is None and not org_wide:
        workspace_id = workspaces[0].workspace.id if workspaces else None
    scope = op.scope
    if workspace_id is not None:
        await op.services.tenancy.get_workspace(op.scope, workspace_id)  # 404 if not this org's
        if not org_wide and workspace_id not in visible:
            raise PermissionDenied("Your role does not show that workspace's usage.")
        scope = Scope(op.organization_id, workspace_id)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    reports = op.services.reports
    tokens = await reports.usage(
        scope, ReportQuery(starting_at=start, bucket_width="1d", limit=days, group_by=["model"])
    )
    costs = await reports.cost(scope, ReportQuery(starting_at=start, limit=days, group_by=["description"]))
    summary = await reports.summary(scope, start, start + timedelta(days=days), ["model"])
    labels = [bucket.starting_at[:10] for bucket in tokens.data]
    token_series: dict[str, list[float]] = {}
    for i, bucket in enumerate(tokens.data):
        for result in bucket.results:
            total = (
                result.uncached_input_tokens
                + result.output_tokens
                + result.cache_read_input_tokens
                + result.cache_creation.ephemeral_5m_input_tokens
            )
            token_series.setdefault(result.model or "?", [0.0] * len(labels))[i] += total
    cost_series: dict[str, list[float]] = {}
    for i, cost_bucket in enumerate(costs.data):
        for line in cost_bucket.results:
            usd = float(Decimal(line.amount) / 100)
            cost_series.setdefault(line.model or "?", [0.0] * len(labels))[i] += usd
    return op.render(
        "usage.html",
        nav="usage",
        days=days,
        ranges=RANGES,
        workspaces=workspaces,
        workspace_id=workspace_id,
        org_wide=org_wide,
        token_chart=stacked_bars("Tokens per day", labels, token_series, lambda v: f"{v:,.0f} tokens"),
        cost_chart=stacked_bars("Cost per day", labels, cost_series, lambda v: f"${v:,.4f}"),
        summary=summary,
        total_requests=sum(r.requests for r in summary),
        total_cost=format_usd(sum(r.cost_picodollars for r in summary)),
        format_usd=format_usd,
    )


async def _workspace_names(op: Operator, visible: set[str]) -> dict[str, WorkspaceView]:
    """The ``visible`` workspaces (archived included) by id: the filter and the table name no others."""
    views = await op.services.tenancy.list_workspaces(op.scope, include_archived=True)
    return {v.workspace.id: v for v in views if v.workspace.id in visible}


@page(P.READ_KEYS)
async def keys(op: Operator) -> Response:
    return await _keys_page(op)


async def _keys_page(op: Operator, created: tuple[object, str] | None = None) -> Response:
    """Every key of the workspaces whose keys the viewer sees."""
    workspace_id = op.request.query_params.get("workspace_id") or None
    visible = set(op.workspaces_allowing(P.READ_KEYS))
    listed = [
        k
        for k in await op.services.tenancy.list_keys(op.scope, workspace_id=workspace_id)
        if k.workspace_id in visible
    ]
    names = await _workspace_names(op, visible)
    return op.render(
        "keys.html",
        nav="keys",
        keys=listed,
        workspaces=names,
        creatable={w: v for w, v in names.items() if op.allows(P.MANAGE_KEYS, w)},
        workspace_id=workspace_id,
        created=created,
        base_url=str(op.request.base_url).rstrip("/"),
    )


@page(P.MANAGE_KEYS)
async def create_key(op: Operator) -> Response:
    """Create a key and show its secret on this response only (it is never stored or shown again)."""
    name = op.text("name", required=True, label="Name")
    if len(name) > 500:
        raise InvalidRequest("Name: at most 500 characters")
    workspace_id = op.text("workspace_id", required=True, label="Workspace")
    op.require(P.MANAGE_KEYS, workspace_id)
    key, secret = await op.services.tenancy.create_key(
        op.scope, workspace_id, name, created_by_user_id=op.user_id
    )
    return await _keys_page(op, created=(key, secret))


@page(P.MANAGE_KEYS)
async def update_key(op: Operator) -> Response:
    """Rename (``name``) or change the status (``status``: active, inactive, archived) of a key."""
    key_id = op.request.path_params["key_id"]
    if not op.allows(P.MANAGE_KEYS, (await op.services.tenancy.get_key(op.scope, key_id)).workspace_id):
        raise key_not_found(key_id)  # not 403: that would tell a key of that id exists elsewhere
    status = op.text("status") or None
    name = op.text("name") or None
    if status is None and name is None:
        raise InvalidRequest("Name: this field is required")
    if status is not None and status not in ("active", "inactive", "archived"):
        raise InvalidRequest(f"Status: '{echo(status)}' is not one of active, inactive, archived")
    key = await op.services.tenancy.update_key(op.scope, key_id, name=name, status=status)
    what = f"renamed to “{key.name}”" if name else f"now {key.status}"
    return op.back(notice=f"Key {key.id} is {what}.")


@page(P.MANAGE_WORKSPACES)
async def workspaces(op: Operator) -> Response:
    views = await op.services.tenancy.list_workspaces(op.scope, include_archived=True)
    return op.render(
        "workspaces.html",
        nav="workspaces",
        views=views,
        models=[m.config.id for m in op.services.catalog.served],
    )


def _workspace_name(op: Operator) -> str:
    name = op.text("name", required=True, label="Name")
    if len(name) > 40:
        raise InvalidRequest("Name: at most 40 characters")
    return name


def _allowed_models(op: Operator) -> list[str] | None:
    """The checked models; none checked means every model (no allow-list)."""
    checked = [str(m) for m in op.form.getlist("allowed_models") if str(m)]
    return checked or None


@page(P.MANAGE_WORKSPACES)
async def create_workspace(op: Operator) -> Response:
    view = await op.services.tenancy.create_workspace(
        op.scope, _workspace_name(op), allowed_models=_allowed_models(op)
    )
    return op.back(notice=f"Workspace “{view.workspace.name}” created ({view.workspace.id}).")


@page(P.MANAGE_WORKSPACES)
async def update_workspace(op: Operator) -> Response:
    allowed = _allowed_models(op)
    view = await op.services.tenancy.update_workspace(
        op.scope,
        op.request.path_params["workspace_id"],
        name=_workspace_name(op),
        allowed_models=allowed,
        clear_allowed_models=allowed is None,
    )
    return op.back(notice=f"Workspace “{view.workspace.name}” saved.")


@page(P.MANAGE_WORKSPACES)
async def archive_workspace(op: Operator) -> Response:
    view = await op.services.tenancy.archive_workspace(op.scope, op.request.path_params["workspace_id"])
    return op.back(notice=f"Workspace “{view.workspace.name}” archived; its keys no longer work.")
