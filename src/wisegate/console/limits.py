"""The limits page: tier, spend limits, prepaid credits and workspace rate limits.

The same calls as ``wisegate credits …`` / ``wisegate limits …``, through the server's own
:class:`~wisegate.domain.limits.accounts.BillingAccounts`: this server applies a change at once (other
processes within ``limits.cache_seconds``).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import Response

from wisegate.console.web import Operator, page
from wisegate.domain.limits.accounts import NO_LIMIT, RATE_DIMENSIONS
from wisegate.domain.pricing import format_amount
from wisegate.domain.roles import Permission as P
from wisegate.domain.spend_limits import LIMIT_AMOUNTS, Actor, parse_limit_usd, usd_field
from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import echo
from wisegate.records.billing import WorkspaceLimits


@dataclass(frozen=True, slots=True)
class WorkspaceRow:
    id: str
    name: str
    limits: WorkspaceLimits
    spent_pico: int
    reserved_pico: int


def _may_set(op: Operator, workspace_id: str) -> None:
    """A workspace's limits: its workspace admins, or whoever manages the organization's billing."""
    if not op.allows(P.MANAGE_BILLING):
        op.require(P.MANAGE_LIMITS, workspace_id)


@page(P.READ_BILLING, P.READ_LIMITS)
async def limits_page(op: Operator) -> Response:
    limits = op.services.limits
    visible = set(op.workspaces_allowing(P.READ_LIMITS))
    names = {
        view.workspace.id: view.workspace.name
        for view in await op.services.tenancy.list_workspaces(op.scope)
        if view.workspace.id in visible
    }
    overview = await op.services.billing.overview(op.organization_id, list(names))
    rows = [
        WorkspaceRow(ws.workspace_id, names[ws.workspace_id], ws.limits, ws.spent_pico, ws.reserved_pico)
        for ws in overview.workspaces
    ]
    requests = [
        r
        for r in await op.services.spend_limits.list_requests(op.scope, statuses=["pending"])
        if op.allows(P.MANAGE_BILLING) or op.allows(P.MANAGE_LIMITS, r.request.workspace_id)
    ]
    return op.render(
        "limits.html",
        nav="limits",
        spend_requests=requests,
        usd_field=usd_field,
        names=names,
        account=overview.account,
        tier=overview.tier,
        tiers=limits.config.tiers,
        classes=list(limits.config.model_classes),
        month=overview.period,
        spent=overview.spent_pico,
        reserved=overview.reserved_pico,
        rows=rows,
        usd=format_amount,
        no_limit=NO_LIMIT,
    )


@page(P.MANAGE_BILLING)
async def add_credits(op: Operator) -> Response:
    """``wisegate credits add``: the first top-up makes the organization prepaid."""
    amount = op.usd_pico("usd", label="Amount", allow_negative=True)
    if amount is None or amount == 0:
        raise InvalidRequest("Amount: enter an amount in USD, e.g. 25 or 0.50")
    note = op.text("note") or "top-up"
    account = await op.services.billing.add_credits(op.organization_id, amount, note)
    return op.back(notice=f"Credits added: balance {format_amount(account.credit_balance_pico)}.")


@page(P.MANAGE_BILLING)
async def set_tier(op: Operator) -> Response:
    """``wisegate limits tier [NAME]``: pin a tier, or follow purchases / spend again (blank)."""
    name = op.text("tier") or None
    known = [t.name for t in op.services.limits.config.tiers]
    if name is not None and name not in known:
        raise InvalidRequest(f"Tier: unknown tier '{echo(name)}'; configured: {', '.join(known)}")
    await op.services.billing.pin_tier(op.organization_id, name)
    return op.back(notice=f"Tier {'pinned to ' + name if name else 'follows the thresholds again'}.")


@page(P.MANAGE_BILLING, P.MANAGE_LIMITS)
async def set_spend_limit(op: Operator) -> Response:
    """``wisegate limits spend [--workspace ID] [--usd N]``: blank removes the limit."""
    pico = op.usd_pico("usd", label="Monthly spend limit")
    workspace_id = op.text("workspace_id") or None
    if workspace_id is not None:
        _may_set(op, workspace_id)
    else:
        op.require(P.MANAGE_BILLING)
    if workspace_id is None:
        target = "the organization"
    else:
        view = await op.services.tenancy.get_workspace(op.scope, workspace_id)
        target = f"workspace “{view.workspace.name}”"
    await op.services.billing.set_spend_limit(op.organization_id, pico, workspace_id)
    return op.back(notice=f"Monthly spend limit of {target}: {format_amount(pico)}.")


@page(P.MANAGE_BILLING, P.MANAGE_LIMITS)
async def set_workspace_rate(op: Operator) -> Response:
    """``wisegate limits workspace-rate``: lower limits for one model class (all blank: remove them)."""
    workspace_id = op.text("workspace_id", required=True, label="Workspace")
    _may_set(op, workspace_id)
    view = await op.services.tenancy.get_workspace(op.scope, workspace_id)
    model_class = op.text("model_class", required=True, label="Model class")
    if model_class not in op.services.limits.config.model_classes:
        raise InvalidRequest(f"Model class: unknown class '{echo(model_class)}'")
    values = {
        dim: op.integer(dim, label=label, low=1, high=NO_LIMIT)
        for dim, label in zip(
            RATE_DIMENSIONS, ("Requests/min", "Input tokens/min", "Output tokens/min"), strict=True
        )
    }
    await op.services.billing.set_workspace_rates(op.organization_id, workspace_id, model_class, values)
    return op.back(notice=f"Rate limits of workspace “{view.workspace.name}” for {model_class} saved.")


def _resolver(op: Operator) -> Actor:
    viewer = op.viewer
    if viewer.user is not None:
        return Actor("user", viewer.user.id, viewer.user)
    assert viewer.admin_key is not None
    return Actor("scoped_api_key_actor", viewer.admin_key.id)


@page(P.MANAGE_BILLING, P.MANAGE_LIMITS)
async def approve_request(op: Operator) -> Response:
    """Approve a spend limit increase request: the workspace's monthly limit becomes the amount."""
    request_id = op.request.path_params["request_id"]
    current = await op.services.spend_limits.get(op.scope, request_id)
    _may_set(op, current.request.workspace_id)
    pico = op.usd_pico("usd", label="Approved monthly limit", parse=parse_limit_usd)
    if pico is None:
        raise InvalidRequest(f"Approved monthly limit: enter {LIMIT_AMOUNTS}")
    await op.services.spend_limits.approve(op.scope, request_id, pico, _resolver(op))
    return op.back(notice=f"Approved: the workspace's monthly spend limit is now {format_amount(pico)}.")


@page(P.MANAGE_BILLING, P.MANAGE_LIMITS)
async def deny_request(op: Operator) -> Response:
    request_id = op.request.path_params["request_id"]
    current = await op.services.spend_limits.get(op.scope, request_id)
    _may_set(op, current.request.workspace_id)
    await op.services.spend_limits.deny(op.scope, request_id, _resolver(op))
    return op.back(notice="Request denied.")
