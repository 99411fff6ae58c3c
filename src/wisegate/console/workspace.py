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

import json
import logging
from collections.abc import AsyncIterator

import anyio
from starlette.responses import JSONResponse, Response, StreamingResponse

from wisegate.console.web import HEADERS, NOT_ALLOWED, Operator, page, redirect
from wisegate.domain.keys import Principal
from wisegate.domain.messages import MessageStream, accumulate
from wisegate.domain.pricing import format_usd
from wisegate.domain.roles import Permission
from wisegate.domain.roles import Permission as P
from wisegate.domain.tenancy import WorkspaceView
from wisegate.domain.workbench import (
    FIELDS,
    PromptOwner,
    count_request,
    messages_request,
    request_body,
    snippets,
    state_of,
    turns_of,
)
from wisegate.errors import ApiError, InvalidRequest, PermissionDenied
from wisegate.protocol.events import (
    ErrorBody,
    ErrorEvent,
    MessageDelta,
    MessageStart,
    MessageStop,
    encode_sse,
)
from wisegate.protocol.messages import Usage, new_id

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


def _state(op: Operator) -> dict[str, str]:
    return {k: str(op.form.get(k) or "") for k in FIELDS}


def _owner(op: Operator) -> PromptOwner:
    return PromptOwner(op.organization_id, op.viewer.actor_id)


async def _render(op: Operator, state: dict[str, str], status: int = 200, **extra: object) -> Response:
    views, chosen = await _workspace(op, _chosen_id(op), P.USE_PLAYGROUND)
    return op.render(
        "playground.html",
        status,
        nav="playground",
        views=views,
        chosen=chosen,
        models=_models(op, chosen),
        form=state,
        prompts=await op.services.workbench.prompts(_owner(op)),
        turns=turns_of(state),
        **extra,
    )


@page(P.USE_PLAYGROUND)
async def playground(op: Operator) -> Response:
    """The workbench; ``?prompt=ID`` loads one of the viewer's saved prompts into it."""
    prompt_id = op.request.query_params.get("prompt")
    state: dict[str, str] = {}
    if prompt_id:
        state = state_of(await op.services.workbench.prompt(_owner(op), prompt_id))
    return await _render(op, state, loaded=prompt_id)


async def playground_principal(op: Operator, workspace_id: str) -> Principal:
    """The workspace's console-owned API key (created on first use) as the caller of the request."""
    tenancy = op.services.tenancy
    for key in await tenancy.list_keys(op.scope, workspace_id=workspace_id, status="active"):
        if key.name == PLAYGROUND_KEY_NAME:
            return Principal(key)
    key, _ = await tenancy.create_key(op.scope, workspace_id, PLAYGROUND_KEY_NAME)
    return Principal(key)


@page(P.USE_PLAYGROUND)
async def run_playground(op: Operator) -> Response:
    """Send the conversation through ``MessageService``: SSE for the page script, else a rendered answer."""
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
    _, chosen = await _workspace(op, _chosen_id(op), P.USE_PLAYGROUND)
    state = _state(op)
    try:
        body = messages_request(state, stream=False)
        principal = await playground_principal(op, chosen.workspace.id)
        call = await op.services.messages.call(principal, body, request_id, streamed=False)
        stream = await op.services.messages.open_stream(call)
        message = await accumulate(stream)
    except ApiError as exc:
        return await _render(op, state, exc.status, error=exc.message)
    text = "".join(getattr(block, "text", "") for block in message.content)
    cost = op.services.limits.prices.cost(message.model, message.usage)
    return await _render(op, state, answer=text, usage=message.usage, cost=format_usd(cost))


async def _sse(op: Operator, request_id: str) -> AsyncIterator[bytes]:
    """The Claude API's own stream events, with ``wisegate_cost`` (what the answer cost) before
    ``message_stop``; a failure
    (before or during the stream) is an ``error`` event. A client that stops reading (the page's Stop
    button) closes the stream: the request is settled for what was generated."""
    stream: MessageStream | None = None
    try:
        _, chosen = await _workspace(op, _chosen_id(op), P.USE_PLAYGROUND)
        body = messages_request(_state(op), stream=True)
        principal = await playground_principal(op, chosen.workspace.id)
        call = await op.services.messages.call(principal, body, request_id, streamed=True)
        stream = await op.services.messages.open_stream(call)
        usage = Usage()
        async for event in stream:
            if isinstance(event, MessageStart):
                usage = event.message.usage.model_copy()
            elif isinstance(event, MessageDelta):
                usage.output_tokens = event.usage.output_tokens
            elif isinstance(event, MessageStop):
                cost = {
                    "type": "wisegate_cost",
                    "cost_usd": format_usd(op.services.limits.prices.cost(body.model, usage)),
                }
                yield f"event: wisegate_cost\ndata: {json.dumps(cost)}\n\n".encode()
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


def _error_json(exc: ApiError) -> Response:
    """The page script's endpoints answer errors as the API's envelope, not as a redirect."""
    body = {"type": "error", "error": {"type": exc.type, "message": exc.message}}
    return JSONResponse(body, status_code=exc.status, headers=HEADERS)


@page(P.USE_PLAYGROUND)
async def count_tokens(op: Operator) -> Response:
    """The conversation's input tokens (``count_tokens``), before sending it."""
    try:
        _, chosen = await _workspace(op, _chosen_id(op), P.USE_PLAYGROUND)
        principal = await playground_principal(op, chosen.workspace.id)
        tokens = await op.services.messages.count_tokens(count_request(_state(op)), principal)
    except ApiError as exc:
        return _error_json(exc)
    return JSONResponse({"input_tokens": tokens}, headers=HEADERS)


@page(P.USE_PLAYGROUND)
async def get_code(op: Operator) -> Response:
    """The conversation as curl, Python SDK and TypeScript SDK code."""
    state = _state(op)
    try:
        await _workspace(op, _chosen_id(op), P.USE_PLAYGROUND)  # 403 where the person may not send
        messages_request(state, stream=False)  # the same checks as sending it
    except ApiError as exc:
        return _error_json(exc)
    base_url = op.services.settings.console_public_url or str(op.request.base_url)
    return JSONResponse(snippets(request_body(state), base_url.rstrip("/")), headers=HEADERS)


@page(P.USE_PLAYGROUND)
async def save_prompt(op: Operator) -> Response:
    saved = await op.services.workbench.save(
        _owner(op), op.text("prompt_name", required=True, label="Name"), _state(op)
    )
    return redirect(
        op.request, f"/console/playground?prompt={saved.id}", notice=f"Prompt “{saved.name}” saved."
    )


@page(P.USE_PLAYGROUND)
async def delete_prompt(op: Operator) -> Response:
    await op.services.workbench.delete(_owner(op), op.request.path_params["prompt_id"])
    return redirect(op.request, "/console/playground", notice="Prompt deleted.")
