"""Login and logout, the usage dashboard, API keys and workspaces."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from starlette.requests import Request
from starlette.responses import Response

from wisegate.console.charts import stacked_bars
from wisegate.console.session import COOKIE, LOGIN_COOKIE, same
from wisegate.console.web import (
    Operator,
    codec_of,
    cookie_options,
    page,
    redirect,
    render,
    safe_path,
)
from wisegate.domain.keys import ADMIN_KEY_PREFIX
from wisegate.domain.pricing import format_usd
from wisegate.domain.reports import ReportQuery
from wisegate.domain.scope import Scope
from wisegate.domain.tenancy import WorkspaceView
from wisegate.errors import AuthenticationFailed, InvalidRequest
from wisegate.services import services_of

RANGES = (7, 14, 31)


async def login_form(request: Request) -> Response:
    return _login_page(request, request.query_params.get("next"))


def _login_page(
    request: Request, next_path: str | None, error: str | None = None, status: int = 200
) -> Response:
    token = secrets.token_urlsafe(16)
    response = render(
        request,
        "login.html",
        status,
        login_token=token,
        next=safe_path(next_path),
        error=error,
        prefix=ADMIN_KEY_PREFIX,
    )
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/console/login", **cookie_options(request))
    return response


async def login(request: Request) -> Response:
    """Check an admin key and open a session; the key itself is never stored in the cookie."""
    form = await request.form()
    next_path = str(form.get("next") or "")
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    if not expected or not same(str(form.get("login_token") or ""), expected):
        return _login_page(request, next_path, "The login form expired. Please try again.", 403)
    services = services_of(request)
    try:
        principal = await services.keys.authenticate(str(form.get("key") or "").strip(), kind="admin")
    except AuthenticationFailed:
        return _login_page(request, next_path, "That is not an active admin key (sk-wg-admin01-…).", 401)
    codec = codec_of(request)
    _, cookie = codec.issue(principal.key.id)
    response = redirect(request, safe_path(next_path))
    response.set_cookie(
        COOKIE, cookie, max_age=codec.lifetime_seconds, path="/console", **cookie_options(request)
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return response


@page
async def logout(op: Operator) -> Response:
    response = redirect(op.request, "/console/login")
    response.delete_cookie(COOKIE, path="/console")
    return response


def _days(op: Operator) -> int:
    raw = op.request.query_params.get("days", "14")
    return int(raw) if raw in {str(r) for r in RANGES} else 14


@page
async def usage(op: Operator) -> Response:
    """Tokens and cost per day by model (stacked SVG bars), and totals by model, for the last N days."""
    days = _days(op)
    workspaces = await op.services.tenancy.list_workspaces(op.scope, include_archived=True)
    workspace_id = op.request.query_params.get("workspace_id") or None
    scope = op.scope
    if workspace_id is not None:
        await op.services.tenancy.get_workspace(op.scope, workspace_id)  # 404 if not this org's
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
        token_chart=stacked_bars("Tokens per day", labels, token_series, lambda v: f"{v:,.0f} tokens"),
        cost_chart=stacked_bars("Cost per day", labels, cost_series, lambda v: f"${v:,.4f}"),
        summary=summary,
        total_requests=sum(r.requests for r in summary),
        total_cost=format_usd(sum(r.cost_picodollars for r in summary)),
        format_usd=format_usd,
    )


async def _workspace_names(op: Operator) -> dict[str, WorkspaceView]:
    views = await op.services.tenancy.list_workspaces(op.scope, include_archived=True)
    return {v.workspace.id: v for v in views}


@page
async def keys(op: Operator) -> Response:
    return await _keys_page(op)


async def _keys_page(op: Operator, created: tuple[object, str] | None = None) -> Response:
    workspace_id = op.request.query_params.get("workspace_id") or None
    listed = await op.services.tenancy.list_keys(op.scope, workspace_id=workspace_id)
    return op.render(
        "keys.html",
        nav="keys",
        keys=listed,
        workspaces=await _workspace_names(op),
        workspace_id=workspace_id,
        created=created,
        base_url=str(op.request.base_url).rstrip("/"),
    )


@page
async def create_key(op: Operator) -> Response:
    """Create a key and show its secret on this response only (it is never stored or shown again)."""
    name = op.text("name", required=True, label="Name")
    if len(name) > 500:
        raise InvalidRequest("Name: at most 500 characters")
    workspace_id = op.text("workspace_id", required=True, label="Workspace")
    key, secret = await op.services.tenancy.create_key(op.scope, workspace_id, name)
    return await _keys_page(op, created=(key, secret))


@page
async def update_key(op: Operator) -> Response:
    """Rename (``name``) or change the status (``status``: active, inactive, archived) of a key."""
    key_id = op.request.path_params["key_id"]
    status = op.text("status") or None
    name = op.text("name") or None
    if status is None and name is None:
        raise InvalidRequest("Name: this field is required")
    if status is not None and status not in ("active", "inactive", "archived"):
        raise InvalidRequest(f"Status: '{status}' is not one of active, inactive, archived")
    if name is not None and len(name) > 500:
        raise InvalidRequest("Name: at most 500 characters")
    key = await op.services.tenancy.update_key(op.scope, key_id, name=name, status=status)
    what = f"renamed to “{key.name}”" if name else f"now {key.status}"
    return op.back(notice=f"Key {key.id} is {what}.")


@page
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


@page
async def create_workspace(op: Operator) -> Response:
    view = await op.services.tenancy.create_workspace(
        op.scope, _workspace_name(op), allowed_models=_allowed_models(op)
    )
    return op.back(notice=f"Workspace “{view.workspace.name}” created ({view.workspace.id}).")


@page
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


@page
async def archive_workspace(op: Operator) -> Response:
    view = await op.services.tenancy.archive_workspace(op.scope, op.request.path_params["workspace_id"])
    return op.back(notice=f"Workspace “{view.workspace.name}” archived; its keys no longer work.")
