"""The Requests page: the request log of the workspaces whose usage the viewer sees (billing and admins:
every workspace), with filters, search by request id, cursor paging and a CSV download."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from starlette.responses import Response

from wisegate.console.web import NOT_ALLOWED, Operator, page
from wisegate.domain.request_log import LogPage, csv_of, query_of
from wisegate.domain.roles import Permission as P
from wisegate.errors import InvalidRequest, PermissionDenied
from wisegate.protocol.bounds import echo

PAGE_SIZE = 50


def _day(op: Operator, name: str, label: str) -> datetime | None:
    raw = op.request.query_params.get(name) or ""
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(f"{label}: '{echo(raw)}' is not a date (YYYY-MM-DD)") from None


async def _page(op: Operator, limit: int) -> tuple[LogPage, list[str] | None]:
    visible = None if op.allows(P.READ_BILLING) else op.workspaces_allowing(P.READ_USAGE)
    params = op.request.query_params
    asked = params.get("workspace_id") or None
    if visible is not None and asked is not None and asked not in visible:
        # Not an empty list: that would read as "no requests there" (and confirm the workspace exists).
        raise PermissionDenied(f"{NOT_ALLOWED} (You do not see the usage of workspace {echo(asked)}.)")
    query = query_of(params, op.organization_id, limit)
    until = _day(op, "until", "To")
    since = _day(op, "since", "From")
    query = replace(query, since=since, until=until.replace(hour=23, minute=59, second=59) if until else None)
    found = await op.services.request_log.page(
        op.scope, query, workspaces=visible, page=params.get("page") or None
    )
    return found, visible


@page(P.READ_USAGE, P.READ_BILLING)
async def requests_page(op: Operator) -> Response:
    found, visible = await _page(op, PAGE_SIZE)
    views = await op.services.tenancy.list_workspaces(op.scope, include_archived=True)
    workspaces = [v for v in views if visible is None or v.workspace.id in visible]
    params = op.request.query_params
    filters = {
        k: params.get(k, "") for k in ("workspace_id", "api_key_id", "model", "status", "since", "until")
    }
    next_query = "&".join(f"{k}={v}" for k, v in filters.items() if v)
    return op.render(
        "requests.html",
        nav="requests",
        log=found,
        workspaces=workspaces,
        filters=filters,
        request_id=params.get("request_id", ""),
        models=[m.config.id for m in op.services.catalog.served],
        next_query=next_query,
    )


@page(P.READ_USAGE, P.READ_BILLING)
async def requests_csv(op: Operator) -> Response:
    found, _visible = await _page(op, 1000)
    headers = {"content-disposition": 'attachment; filename="request-log.csv"', "cache-control": "no-store"}
    if found.next_page:
        headers["x-next-page"] = found.next_page
    return Response(csv_of(found), media_type="text/csv; charset=utf-8", headers=headers)
