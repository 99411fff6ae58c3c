"""The limits page: tier, spend limits, prepaid credits and workspace rate limits.

The same calls as ``wisegate credits …`` / ``wisegate limits …`` (``cli_billing.py``), on the server's own
``LimitService``; after a change its cached accounts are dropped, so this server applies it at once
(other processes within ``limits.cache_seconds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.responses import Response

from wisegate.console.web import Operator, page
from wisegate.domain.pricing import format_amount
from wisegate.domain.rate_limits import NO_LIMIT
from wisegate.domain.roles import Permission as P
from wisegate.domain.spend_limits import Actor
from wisegate.errors import InvalidRequest
from wisegate.storage.billing import WorkspaceLimits


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
    billing = limits.billing
    org = op.organization_id
    account = await billing.account(org)
    tier = limits.tier_of(account)
    month = datetime.now(UTC).strftime("%Y-%m")
    spent, reserved = await billing.period_spend(org, month)
    rows = []
    visible = set(op.workspaces_allowing(P.READ_LIMITS))
    for view in await op.services.tenancy.list_workspaces(op.scope):
        ws = view.workspace
        if ws.id not in visible:
            continue
        ws_spent, ws_reserved = await billing.period_spend(ws.id, month)
        rows.append(
            WorkspaceRow(ws.id, ws.name, await billing.workspace_limits(ws.id), ws_spent, ws_reserved)
        )
    requests = [
        r
        for r in await op.services.spend_limits.list_requests(op.scope, statuses=["pending"])
        if op.allows(P.MANAGE_BILLING) or op.allows(P.MANAGE_LIMITS, r.request.workspace_id)
    ]
    return op.render(
        "limits.html",
        spend_requests=requests,
        names={row.id: row.name for row in rows},
        nav="limits",
        account=account,
        tier=tier,
        tiers=limits.config.tiers,
        classes=list(limits.config.model_classes),
        month=month,
        spent=spent,
        reserved=reserved,
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
    account = await op.services.limits.billing.add_credits(op.organization_id, amount, note[:200])
    op.services.limits.forget_cached()
    return op.back(notice=f"Credits added: balance {format_amount(account.credit_balance_pico)}.")


@page(P.MANAGE_BILLING)
async def set_tier(op: Operator) -> Response:
    """``wisegate limits tier [NAME]``: pin a tier, or follow purchases / spend again (blank)."""
    name = op.text("tier") or None
    known = [t.name for t in op.services.limits.config.tiers]
    if name is not None and name not in known:
        raise InvalidRequest(f"Tier: unknown tier '{name}'; configured: {', '.join(known)}")
    await op.services.limits.billing.set_account(op.organization_id, tier=name)
    op.services.limits.forget_cached()
    return op.back(notice=f"Tier {'pinned to ' + name if name else 'follows the thresholds again'}.")


@page(P.MANAGE_BILLING, P.MANAGE_LIMITS)
async def set_spend_limit(op: Operator) -> Response:
    """``wisegate limits spend [--workspace ID] [--usd N]``: blank removes the limit."""
    pico = op.usd_pico("usd", label="Monthly spend limit")
    workspace_id = op.text("workspace_id") or None
    billing = op.services.limits.billing
    if workspace_id is not None:
        _may_set(op, workspace_id)
    else:
        op.require(P.MANAGE_BILLING)
    if workspace_id is None:
        await billing.set_account(op.organization_id, spend_limit_pico=pico)
        target = "the organization"
    else:
        view = await op.services.tenancy.get_workspace(op.scope, workspace_id)
        current = await billing.workspace_limits(workspace_id)
        await billing.set_workspace_limits(workspace_id, op.organization_id, pico, current.rate_limits)
        target = f"workspace “{view.workspace.name}”"
    op.services.limits.forget_cached()
    return op.back(notice=f"Monthly spend limit of {target}: {format_amount(pico)}.")


@page(P.MANAGE_BILLING, P.MANAGE_LIMITS)
async def set_workspace_rate(op: Operator) -> Response:
    """``wisegate limits workspace-rate``: lower limits for one model class (all blank: remove them)."""
    workspace_id = op.text("workspace_id", required=True, label="Workspace")
    _may_set(op, workspace_id)
    view = await op.services.tenancy.get_workspace(op.scope, workspace_id)
    model_class = op.text("model_class", required=True, label="Model class")
    if model_class not in op.services.limits.config.model_classes:
        raise InvalidRequest(f"Model class: unknown class '{model_class}'")
    values = {
        dim: op.integer(dim, label=label, low=1, high=NO_LIMIT - 1)
        for dim, label in (
            ("rpm", "Requests/min"),
            ("itpm", "Input tokens/min"),
            ("otpm", "Output tokens/min"),
        )
    }
    await op.services.rate_limits.store(op.scope, workspace_id, model_class, values)
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
    pico = op.usd_pico("usd", label="Approved monthly limit")
    if pico is None:
        raise InvalidRequest("Approved monthly limit: enter an amount in USD")
    await op.services.spend_limits.approve(op.scope, request_id, pico, _resolver(op))
    return op.back(notice=f"Approved: the workspace's monthly spend limit is now {format_amount(pico)}.")


@page(P.MANAGE_BILLING, P.MANAGE_LIMITS)
async def deny_request(op: Operator) -> Response:
    request_id = op.request.path_params["request_id"]
    current = await op.services.spend_limits.get(op.scope, request_id)
    _may_set(op, current.request.workspace_id)
    await op.services.spend_limits.deny(op.scope, request_id, _resolver(op))
    return op.back(notice="Request denied.")
