"""``GET /v1/organizations/request_log`` (Wisegate extension): recent requests, newest first, by cursor —
as JSON ``{data, next_page}``, or as CSV with ``format=csv``. An admin key sees the organization, an API
key its own workspace."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wisegate.api.admin import _scope
from wisegate.api.paging import query_datetime, query_int
from wisegate.domain.request_log import LogEntry, csv_of, query_of
from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import echo


def entry_json(entry: LogEntry) -> dict[str, Any]:
    r = entry.record
    return {
        "type": "request_log_entry",
        "id": r.request_id,
        "created_at": r.created_at.isoformat().replace("+00:00", "Z"),
        "workspace_id": r.workspace_id,
        "workspace_name": entry.workspace_name,
        "api_key_id": r.api_key_id,
        "api_key_name": entry.key_name,
        "partial_key_hint": entry.key_hint,
        "model": r.model,
        "status": entry.status,
        "error_type": r.error_type,
        "stop_reason": r.stop_reason,
        "usage": {
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "cache_creation_input_tokens": r.cache_creation_input_tokens,
            "cache_read_input_tokens": r.cache_read_input_tokens,
        },
        "cost_usd": entry.cost_usd,
        "latency_ms": r.latency_ms,
        "streamed": r.streamed,
        "batch": r.batch,
        "service_tier": r.service_tier,
    }


async def request_log(request: Request) -> Response:
    services, scope = await _scope(request)
    params = request.query_params
    fmt = params.get("format") or "json"
    if fmt not in ("json", "csv"):
        raise InvalidRequest(f"format: Input should be 'json' or 'csv', got '{echo(fmt)}'")
    limit = query_int(request, "limit", 100 if fmt == "json" else 1000, 1, 1000)
    assert limit is not None
    query = query_of(params, scope.organization_id, limit)
    since = query_datetime(request, "starting_at", required=False)
    until = query_datetime(request, "ending_at", required=False)
    if since is not None and until is not None and until <= since:
        raise InvalidRequest("ending_at: must be after starting_at")
    query = replace(query, since=since, until=until)
    page = await services.request_log.page(scope, query, page=params.get("page") or None)
    if fmt == "csv":
        headers = {"content-disposition": 'attachment; filename="request-log.csv"'}
        if page.next_page:
            headers["x-next-page"] = page.next_page
        return Response(csv_of(page), media_type="text/csv; charset=utf-8", headers=headers)
    body = {"data": [entry_json(e) for e in page.entries], "next_page": page.next_page}
    return Response(json.dumps(body), media_type="application/json")


def routes() -> list[Route]:
    return [Route("/v1/organizations/request_log", request_log, methods=["GET"])]
