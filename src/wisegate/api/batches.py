"""``/v1/messages/batches``: create, list, retrieve, cancel, delete, and the results file."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from wisegate.api.auth import authenticate
from wisegate.api.batch_body import read_batch
from wisegate.api.paging import list_limit
from wisegate.api.render import json_response
from wisegate.protocol.batches import DeletedMessageBatch, MessageBatch, MessageBatchRequestCounts
from wisegate.protocol.resources import ListPage, rfc3339
from wisegate.records.batches import Batch
from wisegate.services import services_of


def _time(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


def render(batch: Batch, request: Request) -> MessageBatch:
    """The wire object; ``results_url`` points at this server, as the client reached it."""
    counts = batch.request_counts
    results_url = None
    if batch.processing_status == "ended":
        results_url = f"{str(request.base_url).rstrip('/')}/v1/messages/batches/{batch.id}/results"
    return MessageBatch(
        id=batch.id,
        processing_status=batch.processing_status,
        request_counts=MessageBatchRequestCounts(
            processing=counts.processing,
            succeeded=counts.succeeded,
            errored=counts.errored,
            canceled=counts.canceled,
            expired=counts.expired,
        ),
        created_at=_time(batch.created_at) or "",
        expires_at=_time(batch.expires_at) or "",
        ended_at=_time(batch.ended_at),
        cancel_initiated_at=_time(batch.cancel_initiated_at),
        archived_at=_time(batch.archived_at),
        results_url=results_url,
    )


async def create_batch(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    settings = services.settings
    spool = await read_batch(request, settings.max_batch_request_bytes, settings.max_batch_requests)
    try:
        batch = await services.batches.create(principal, spool)
    finally:
        spool.close()
    return json_response(render(batch, request))


async def get_batch(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    batch = await services.batches.get(principal, request.path_params["batch_id"])
    return json_response(render(batch, request))


async def list_batches(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    params = request.query_params
    batches, has_more = await services.batches.page(
        principal, list_limit(request), params.get("before_id"), params.get("after_id")
    )
    data = [render(b, request) for b in batches]
    page = ListPage[MessageBatch](
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )
    return json_response(page)


async def cancel_batch(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    batch = await services.batches.cancel(principal, request.path_params["batch_id"])
    return json_response(render(batch, request))


async def delete_batch(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    batch_id = request.path_params["batch_id"]
    await services.batches.delete(principal, batch_id)
    return json_response(DeletedMessageBatch(id=batch_id))


async def batch_results(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    lines = await services.batches.results(principal, request.path_params["batch_id"])
    return StreamingResponse(lines, media_type="application/binary")
