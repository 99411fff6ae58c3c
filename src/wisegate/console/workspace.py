"""Workspace-scoped pages: Message Batches, Files and the playground.

The services behind them take a :class:`Principal` (a key and its workspace). Listing, canceling and
deleting act for the admin in the chosen workspace: the admin's key with that workspace id, never
shown to or asked of anyone. The playground's requests are real ``/v1/messages`` work through
``MessageService`` and must be billed and limited like any other, to a workspace and an API key: they
use a console-owned API key of that workspace, named ``Console playground``, created on first use
(its secret is discarded; it is listed with the other keys, and disabling it stops the playground
there until a new one is made).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from wisegate.console.web import HEADERS, NOT_ALLOWED, Operator, page
from wisegate.domain.keys import Principal
from wisegate.domain.messages import MessageStream, accumulate
from wisegate.domain.roles import Permission
from wisegate.domain.roles import Permission as P
from wisegate.domain.tenancy import WorkspaceView
from wisegate.errors import ApiError, InvalidRequest, PermissionDenied
from wisegate.protocol.events import ErrorBody, ErrorEvent, encode_sse
from wisegate.protocol.messages import MessagesRequest, new_id

PLAYGROUND_KEY_NAME = "Console playground"
PAGE_SIZE = 50
log = logging.getLogger("wisegate.console")


async def _workspace(
    op: Operator, workspace_id: str | None, permission: Permission
) -> tuple[list[WorkspaceView], WorkspaceView]:
    """The active workspaces where the viewer has ``permission``, and the chosen one (default: the
    default workspace, else the first); 403 for a workspace where they lack it."""
    allowed = set(op.workspaces_allowing(permission))
    views = [v for v in await op.services.tenancy.list_workspaces(op.scope) if v.workspace.id in allowed]
    if workspace_id:
        chosen = await op.services.tenancy.get_workspace(op.scope, workspace_id)
        if chosen.workspace.archived_at is not None:
            raise InvalidRequest(f"workspace {workspace_id} is archived")
        op.require(permission, workspace_id)
    else:
        if not views:
            raise PermissionDenied(NOT_ALLOWED)
        chosen = next((v for v in views if v.is_default), views[-1])
    return views, chosen


def _acting_in(op: Operator, workspace_id: str) -> Principal:
    return Principal(op.acting_key(workspace_id))


def _chosen_id(op: Operator) -> str | None:
    return op.text("workspace_id") or op.request.query_params.get("workspace_id") or None


@page(P.READ_BATCHES)
async def batches(op: Operator) -> Response:
    views, chosen = await _workspace(op, _chosen_id(op), P.READ_BATCHES)
    after_id = op.request.query_params.get("after_id") or None
    found, has_more = await op.services.batches.page(
        _acting_in(op, chosen.workspace.id), PAGE_SIZE, None, after_id
    )
    return op.render(
        "batches.html", nav="batches", views=views, chosen=chosen, batches=found, has_more=has_more
    )


@page(P.MANAGE_BATCHES)
async def cancel_batch(op: Operator) -> Response:
    _, chosen = await _workspace(op, _chosen_id(op), P.MANAGE_BATCHES)
    batch = await op.services.batches.cancel(
        _acting_in(op, chosen.workspace.id), op.request.path_params["batch_id"]
    )
    return op.back(notice=f"Batch {batch.id} is {batch.processing_status}.")


@page(P.READ_FILES)
async def files(op: Operator) -> Response:
    views, chosen = await _workspace(op, _chosen_id(op), P.READ_FILES)
    after_id = op.request.query_params.get("after_id") or None
    found, has_more = await op.services.files.page(
        _acting_in(op, chosen.workspace.id), PAGE_SIZE, after_id=after_id
    )
    return op.render("files.html", nav="files", views=views, chosen=chosen, files=found, has_more=has_more)


@page(P.MANAGE_FILES)
async def delete_file(op: Operator) -> Response:
    _, chosen = await _workspace(op, _chosen_id(op), P.MANAGE_FILES)
    record = await op.services.files.delete(
        _acting_in(op, chosen.workspace.id), op.request.path_params["file_id"]
    )
    return op.back(notice=f"File {record.filename} ({record.id}) deleted.")


def _models(op: Operator, chosen: WorkspaceView) -> list[str]:
    allowed = chosen.allowed_models
    return [m.config.id for m in op.services.catalog.served if allowed is None or m.config.id in allowed]


@page(P.USE_PLAYGROUND)
async def playground(op: Operator) -> Response:
    views, chosen = await _workspace(op, _chosen_id(op), P.USE_PLAYGROUND)
    return op.render(
        "playground.html", nav="playground", views=views, chosen=chosen, models=_models(op, chosen), form={}
    )


async def playground_principal(op: Operator, workspace_id: str) -> Principal:
    """The workspace's console-owned API key (created on first use) as the caller of the request."""
    tenancy = op.services.tenancy
    for key in await tenancy.list_keys(op.scope, workspace_id=workspace_id, status="active"):
        if key.name == PLAYGROUND_KEY_NAME:
            return Principal(key)
    key, _ = await tenancy.create_key(op.scope, workspace_id, PLAYGROUND_KEY_NAME)
    return Principal(key)


def _request(op: Operator) -> MessagesRequest:
    max_tokens = op.integer("max_tokens", label="max_tokens", low=1, high=1_000_000) or 256
    body: dict[str, object] = {
        "model": op.text("model", required=True, label="Model"),
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": op.text("message", required=True, label="Message")}],
        "stream": True,
    }
    system = op.text("system")
    if system:
        body["system"] = system
    try:
        return MessagesRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{where}: {first['msg']}") from None


@page(P.USE_PLAYGROUND)
async def run_playground(op: Operator) -> Response:
    """Send the message through ``MessageService``: SSE for the page script, else a rendered answer."""
    streaming = "text/event-stream" in op.request.headers.get("accept", "")
    request_id = getattr(op.request.state, "request_id", None) or new_id("req")
    if streaming:
        return StreamingResponse(
            _sse(op, request_id),
            media_type="text/event-stream",
            # no-cache, not no-store: Chromium reports a no-store fetch stream read to its end as
            # aborted (net::ERR_ABORTED), which confuses browser tooling; POST answers are not cached.
            headers={**HEADERS, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    views, chosen = await _workspace(op, _chosen_id(op), P.USE_PLAYGROUND)
    form = {k: op.text(k) for k in ("model", "system", "message", "max_tokens")}
    try:
        body = _request(op)
        principal = await playground_principal(op, chosen.workspace.id)
        stream = await op.services.messages.open_stream(principal, body, request_id, streamed=False)
        message = await accumulate(stream)
    except ApiError as exc:
        return op.render(
            "playground.html",
            status=exc.status,
            nav="playground",
            views=views,
            chosen=chosen,
            models=_models(op, chosen),
            form=form,
            error=exc.message,
        )
    text = "".join(getattr(block, "text", "") for block in message.content)
    return op.render(
        "playground.html",
        nav="playground",
        views=views,
        chosen=chosen,
        models=_models(op, chosen),
        form=form,
        answer=text,
        usage=message.usage,
    )


async def _sse(op: Operator, request_id: str) -> AsyncIterator[bytes]:
    """The Claude API's own stream events; a failure (before or during the stream) is an ``error`` event."""
    stream: MessageStream | None = None
    try:
        _, chosen = await _workspace(op, _chosen_id(op), P.USE_PLAYGROUND)
        body = _request(op)
        principal = await playground_principal(op, chosen.workspace.id)
        stream = await op.services.messages.open_stream(principal, body, request_id, streamed=True)
        async for event in stream:
            yield encode_sse(event)
    except ApiError as exc:
        yield encode_sse(ErrorEvent(error=ErrorBody(type=exc.type, message=exc.message)))
    except Exception:
        log.exception("playground stream failed")
        yield encode_sse(ErrorEvent(error=ErrorBody(type="api_error", message="Internal server error")))
    finally:
        if stream is not None:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
