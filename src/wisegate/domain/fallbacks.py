"""Server-side fallbacks (``fallbacks`` on Messages) and ``fallback_credit_token``, on the typed path.

``fallbacks`` lists the models to try, in order, when the requested one declines (its answer ends
with ``stop_reason: "refusal"``); ``"default"`` means the model's configured ``fallbacks``. The
declining model's output stays in the response, followed by a ``fallback`` block (``from``, ``to``,
``trigger``) and the next model's output, re-indexed, exactly as the Claude API streams it. Usage
adds up every model that ran, and ``usage.iterations`` lists them: ``message`` entries for models
that declined, a ``fallback_message`` entry for the one that answered. A model configured with
``fallback_on_overload`` also hands over when it is overloaded (529) before answering; no model ran
and declined then, so there is no ``fallback`` block, only the ``fallback_message`` entry.
Each model's usage is recorded under its own id, as its own request (``<request id>_fb<n>``).

Every entry's request is built from the original one and checked when the request arrives, before
any model runs (``MessageService``): a bad entry is a 400 naming ``fallbacks.<n>``, and a configured
(``"default"``) fallback the key may not use is a 404 that does not name it.

Relayed upstreams receive all of this byte for byte and apply it themselves.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from wisegate.errors import ApiError, InvalidRequest, from_validation_error
from wisegate.protocol.content import FallbackBlockParam
from wisegate.protocol.events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    MessageDelta,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
    StreamEvent,
)
from wisegate.protocol.messages import CountTokensRequest, FallbackBlock, FallbackInfo, MessagesRequest, Usage
from wisegate.protocol.options import FallbackCreditToken, FallbackEntry

R = TypeVar("R", MessagesRequest, CountTokensRequest)
OpenNext = Callable[[], Awaitable[AsyncIterable[StreamEvent]]]
_NOT_APPLIED = {"status": {"type": "not_applied", "reason": "not_enabled"}}


def chain(request: MessagesRequest, configured: list[str]) -> list[FallbackEntry]:
    """The models to try after the requested one (``"default"``: the configured ones)."""
    if request.fallbacks is None or request.compaction is not None:
        return []
    if request.fallbacks == "default":
        return [FallbackEntry(model=model) for model in configured]
    return list(request.fallbacks)


def attempt(request: MessagesRequest, entry: FallbackEntry, index: int) -> MessagesRequest:
    """The request the ``index``-th entry runs: the original ``request`` with the entry's overrides (a
    field left out keeps the request's value, ``null`` clears it; ``output_config`` combines field by
    field). 400 naming ``fallbacks.<index>`` when that is not a valid request."""
    fields = request.model_dump(mode="json", exclude_unset=True, by_alias=True)
    fields.pop("fallbacks", None)
    fields["model"] = entry.model
    if entry.max_tokens is not None:
        fields["max_tokens"] = entry.max_tokens
    for name in ("thinking", "speed"):
        if name in entry.model_fields_set:
            value = getattr(entry, name)
            fields[name] = (
                value.model_dump(mode="json", by_alias=True) if hasattr(value, "model_dump") else value
            )
    if "output_config" in entry.model_fields_set:
        override = entry.output_config
        fields["output_config"] = (
            None
            if override is None
            else {
                **(fields.get("output_config") or {}),
                **override.model_dump(mode="json", exclude_unset=True, by_alias=True),
            }
        )
    try:
        return MessagesRequest.model_validate(fields)
    except ValidationError as exc:
        raise in_entry(from_validation_error(exc), index) from None


def in_entry(error: ApiError, index: int) -> InvalidRequest:
    """``error``, about the request an entry runs, as a 400 naming the entry: ``fallbacks.0.max_tokens:
    …`` for what the entry sets, ``fallbacks.0: …`` for the rest of the request."""
    head = re.split(r"[.:]", error.message, maxsplit=1)[0]
    if head in _OVERRIDES:
        return InvalidRequest(f"fallbacks.{index}.{error.message}")
    return InvalidRequest(f"fallbacks.{index}: {error.message}")


_OVERRIDES = frozenset(FallbackEntry.model_fields)


def drop_markers(request: R) -> R:
    """``request`` without the ``fallback`` blocks echoed back from earlier answers (not prompt text)."""
    if not any(
        isinstance(b, FallbackBlockParam)
        for m in request.messages
        if isinstance(m.content, list)
        for b in m.content
    ):
        return request
    messages = [
        m.model_copy(update={"content": [b for b in m.content if not isinstance(b, FallbackBlockParam)]})
        if isinstance(m.content, list)
        else m
        for m in request.messages
    ]
    return request.model_copy(update={"messages": [m for m in messages if m.content]})


def credit_outcome(request: MessagesRequest) -> dict[str, Any] | None:
    """``usage.fallback_credit`` for a request with ``fallback_credit_token``, or a 400 in strict mode.

    Wisegate's own models mint no fallback credit tokens, so none can be redeemed: ``strict`` (the
    default) refuses the request rather than serving it at the normal price unasked; ``best_effort``
    serves it and says the reprice was not applied."""
    token = request.fallback_credit_token
    if token is None:
        return None
    if isinstance(token, FallbackCreditToken) and token.mode == "best_effort":
        return _NOT_APPLIED
    raise InvalidRequest(
        "fallback_credit_token: this token cannot be redeemed: fallback credit is not available for "
        f"'{request.model}' (Wisegate's models issue no fallback credit tokens). Retry without it, or send "
        '{"token": ..., "mode": "best_effort"} to be served at the normal price.'
    )


def _iteration(kind: str, model: str, usage: Usage | MessageDeltaUsage) -> dict[str, Any]:
    return {
        "type": kind,
        "model": model,
        "input_tokens": usage.input_tokens or 0,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens or 0,
        "cache_read_input_tokens": usage.cache_read_input_tokens or 0,
    }


async def on_refusal(
    events: AsyncGenerator[StreamEvent], usage: Usage, model: str, open_next: OpenNext
) -> AsyncGenerator[StreamEvent]:
    """``events`` until a refusal; then a ``fallback`` block and the next model's answer (``open_next``).

    ``usage`` is the declining model's tally, ``model`` the id its answer is labelled with."""
    blocks = 0
    refusal: MessageDelta | None = None
    try:
        async for event in events:
            if isinstance(event, ContentBlockStart):
                blocks = event.index + 1
            if isinstance(event, MessageDelta) and event.delta.stop_reason == "refusal":
                refusal = event
                continue
            if isinstance(event, MessageStop) and refusal is not None:
                break
            yield event
    finally:
        await events.aclose()
    if refusal is None:
        return
    reported = refusal.usage  # cumulative, as the backend reported them; the tally fills the gaps
    declined = _iteration(
        "message",
        model,
        reported.model_copy(
            update={
                name: getattr(usage, name)
                for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
                if getattr(reported, name) is None
            }
        ),
    )
    category = (refusal.delta.stop_details or {}).get("category")
    successor = await open_next()
    stream = aiter(successor)
    answered_by, started = model, Usage()
    try:
        async for event in stream:
            if isinstance(event, MessageStart):
                block = FallbackBlock(
                    from_=FallbackInfo(model=model),
                    to=FallbackInfo(model=event.message.model),
                    trigger={"type": "refusal", "category": category},
                )
                answered_by, started = event.message.model, event.message.usage
                yield ContentBlockStart(index=blocks, content_block=block)
                yield ContentBlockStop(index=blocks)
            elif isinstance(event, ContentBlockStart | ContentBlockDelta | ContentBlockStop):
                yield event.model_copy(update={"index": event.index + blocks + 1})
            elif isinstance(event, MessageDelta):
                yield _combined(event, declined, answered_by, started)
            else:
                yield event
    finally:
        closer = getattr(successor, "aclose", None)
        if closer is not None:
            await closer()


def _combined(event: MessageDelta, declined: dict[str, Any], model: str, started: Usage) -> MessageDelta:
    """The answering model's final ``message_delta`` with usage summed over every model that ran."""
    final = event.usage
    answered = MessageDeltaUsage(
        output_tokens=final.output_tokens,
        input_tokens=final.input_tokens if final.input_tokens is not None else started.input_tokens,
        cache_creation_input_tokens=(
            final.cache_creation_input_tokens
            if final.cache_creation_input_tokens is not None
            else started.cache_creation_input_tokens
        ),
        cache_read_input_tokens=(
            final.cache_read_input_tokens
            if final.cache_read_input_tokens is not None
            else started.cache_read_input_tokens
        ),
    )
    later = final.iterations or [_iteration("fallback_message", model, answered)]
    total = MessageDeltaUsage(
        output_tokens=declined["output_tokens"] + answered.output_tokens,
        input_tokens=declined["input_tokens"] + (answered.input_tokens or 0),
        cache_creation_input_tokens=declined["cache_creation_input_tokens"]
        + (answered.cache_creation_input_tokens or 0),
        cache_read_input_tokens=declined["cache_read_input_tokens"] + (answered.cache_read_input_tokens or 0),
        iterations=[declined, *later],
        fallback_credit=final.fallback_credit,
    )
    return event.model_copy(update={"usage": total})


async def served_by_fallback(
    events: AsyncGenerator[StreamEvent], usage: Usage, model: str
) -> AsyncGenerator[StreamEvent]:
    """The answer of a fallback model that stood in for an overloaded one: usage says who answered."""
    try:
        async for event in events:
            if isinstance(event, MessageDelta) and event.usage.iterations is None:
                entry = _iteration("fallback_message", model, usage)
                event = event.model_copy(
                    update={"usage": event.usage.model_copy(update={"iterations": [entry]})}
                )
            yield event
    finally:
        await events.aclose()


async def with_credit(
    events: AsyncGenerator[StreamEvent], outcome: dict[str, Any]
) -> AsyncGenerator[StreamEvent]:
    """``usage.fallback_credit`` on the final ``message_delta``."""
    try:
        async for event in events:
            if isinstance(event, MessageDelta):
                event = event.model_copy(
                    update={"usage": event.usage.model_copy(update={"fallback_credit": outcome})}
                )
            yield event
    finally:
        await events.aclose()


def is_overload(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.status == 529
