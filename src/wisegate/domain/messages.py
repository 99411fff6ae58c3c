"""MessageService: route the model, check what the backend can honour, stream, and settle usage.

``open_stream`` returns a :class:`MessageStream` whose first event has already been produced, so that
every error a backend raises before generating becomes a proper HTTP error. ``create`` assembles the
non-streaming ``Message`` from the same stream.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from functools import partial

import anyio

from wisegate.backends.base import relay_of
from wisegate.backends.registry import BackendRegistry, ServedModel
from wisegate.domain import fallbacks
from wisegate.domain.attachments import Attachments
from wisegate.domain.catalog import ModelCatalog
from wisegate.domain.compaction import compaction_events, expand_summaries, summarization_request
from wisegate.domain.keys import Principal
from wisegate.domain.limits import Admission, LimitService, RateLimitSnapshot
from wisegate.domain.relay import RelayedResponse, count_relayed, refers_to_stored, relay, request_bytes
from wisegate.domain.settlement import Settlement, record_usage
from wisegate.errors import ApiError, InvalidRequest
from wisegate.protocol.events import (
    CompactionDelta,
    ContentBlockDelta,
    ContentBlockStart,
    InputJsonDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    SignatureDelta,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
)
from wisegate.protocol.json_depth import TooDeep, check_depth
from wisegate.protocol.messages import (
    CompactionBlock,
    CountTokensRequest,
    DocumentBlockParam,
    FallbackBlock,
    ImageBlockParam,
    Message,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    Usage,
)
from wisegate.telemetry import tracing

log = logging.getLogger("wisegate.messages")


class MessageStream:
    """The events of one response. Iterate once; closing it early stops the backend and still settles."""

    def __init__(self, first: StreamEvent, rest: AsyncGenerator[StreamEvent], settle: Settlement) -> None:
        self._first = first
        self._rest = rest
        self._settle = settle
        self._events = self._run()
        self.rate_limits: RateLimitSnapshot | None = settle.admission.snapshot if settle.admission else None

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events

    async def _run(self) -> AsyncGenerator[StreamEvent]:
        try:
            self._settle.observe(self._first)
            yield self._first
            async for event in self._rest:
                self._settle.observe(event)
                if isinstance(event, MessageStop):
                    # The settlement is journaled before message_stop leaves: a client that saw the
                    # end of the stream has been billed, even if the server dies right after.
                    await self._settle.finish()
                yield event
        except ApiError as exc:
            self._settle.error_type = exc.type
            raise
        except Exception:
            self._settle.error_type = "api_error"
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish()

    def abort(self, error_type: str) -> None:
        """Record why the response ends before the backend finished (settled by ``aclose``)."""
        if self._settle.stop_reason is None and self._settle.error_type is None:
            self._settle.error_type = error_type

    async def aclose(self) -> None:
        """Stop the backend (if still running) and write the usage record, once."""
        await self._events.aclose()
        await self._finish()

    async def _finish(self) -> None:
        await self._rest.aclose()
        await self._settle.finish()


class MessageService:
    def __init__(
        self,
        registry: BackendRegistry,
        limits: LimitService,
        *,
        catalog: ModelCatalog | None = None,
        attachments: Attachments | None = None,
    ) -> None:
        self._registry = registry
        self._catalog = catalog or ModelCatalog(registry)
        self._attachments = attachments
        self._limits = limits
        # Interactive (non-batch) requests being answered, by backend name: batch workers yield to them.
        self.interactive_in_flight: Counter[str] = Counter()

    def resolve(self, model: str) -> ServedModel:
        return self._registry.resolve(model)

    async def open_stream(
        self,
        principal: Principal,
        request: MessagesRequest,
        request_id: str,
        *,
        streamed: bool,
        batch: bool = False,
    ) -> MessageStream:
        """Start generation; backend errors before the first event propagate as ``ApiError``.

        ``batch``: a Message Batches request — billed at half price, outside the Messages rate limits,
        recorded with service tier ``batch``, and never counted as interactive traffic.
        ``compaction`` requests are answered with a summary (``domain/compaction.py``); ``fallbacks``
        hand a declined request to the next model (``domain/fallbacks.py``).
        """
        return await self._open(principal, request, request_id, streamed, batch, hop=0)

    async def _open(
        self,
        principal: Principal,
        request: MessagesRequest,
        request_id: str,
        streamed: bool,
        batch: bool,
        *,
        hop: int,
        stands_in: bool = False,
    ) -> MessageStream:
        """One model's answer; ``hop`` counts the fallbacks before it, ``stands_in`` is set when it
        answers for an overloaded model."""
        started = time.monotonic()
        container: dict[str, object] | None = None
        usage = Usage(service_tier="batch") if batch else Usage()
        hop_id = f"{request_id}_fb{hop}" if hop else request_id
        try:
            served = await self._catalog.for_request(principal, request.model)
            chain = fallbacks.chain(request, served.config.fallbacks)
            for index, entry in enumerate(chain if request.fallbacks != "default" else []):
                await self._fallback_model(principal, entry.model, f"fallbacks.{index}.model")
            credit = fallbacks.credit_outcome(request)
            if self._attachments is not None:  # file_id sources, PDFs as text, container skills
                request, container = await self._attachments.resolve(
                    principal, request, served.backend.capabilities
                )
            original = request
            request = fallbacks.drop_markers(expand_summaries(request))
            if request.compaction is not None:
                request = summarization_request(request)
            request = self._fit(served, request)
            with tracing.span("admission"):
                admission = await self._admit(principal, served, request, hop_id, batch)
        except ApiError as exc:
            await record_usage(
                self._limits, principal, hop_id, request.model, usage, None, exc.type, streamed, started
            )
            raise
        on_finish = None
        if not batch:
            self.interactive_in_flight[served.backend.name] += 1
            on_finish = partial(self.interactive_in_flight.subtract, [served.backend.name])
        settle = Settlement(
            self._limits, principal, hop_id, served.config.id, streamed, usage, admission, on_finish
        )
        events = served.backend.stream(request, served.route, usage)
        if original.compaction is not None:
            events = compaction_events(events, usage)
        elif chain:

            async def open_next() -> MessageStream:
                following = fallbacks.next_request(original, chain)
                return await self._open(principal, following, request_id, streamed, batch, hop=hop + 1)

            events = fallbacks.on_refusal(events, usage, original.model, open_next)
        if stands_in:
            events = fallbacks.served_by_fallback(events, usage, served.config.id)
        if credit is not None:
            events = fallbacks.with_credit(events, credit)
        settle.span = tracing.start_span("backend", backend=served.backend.name, model=served.config.id)
        try:
            with tracing.current(settle.span):
                first = await events.__anext__()
        except StopAsyncIteration:
            settle.error_type = "api_error"
            await settle.finish()
            raise ApiError("The backend produced no response.") from None
        except BaseException as exc:
            settle.error_type = exc.type if isinstance(exc, ApiError) else "api_error"
            with anyio.CancelScope(shield=True):
                await events.aclose()
                await settle.finish()
            if chain and served.config.fallback_on_overload and fallbacks.is_overload(exc):
                following = fallbacks.next_request(original, chain)
                return await self._open(
                    principal, following, request_id, streamed, batch, hop=hop + 1, stands_in=True
                )
            raise
        if container is not None and isinstance(first, MessageStart):
            first.message.container = container
        return MessageStream(first, events, settle)

    async def _fallback_model(self, principal: Principal, model: str, where: str) -> None:
        """400 naming ``where`` unless ``model`` can answer this principal's requests."""
        try:
            await self._catalog.for_request(principal, model)
        except ApiError as exc:
            raise InvalidRequest(f"{where}: {exc.message}") from None

    async def open_relay(
        self,
        principal: Principal,
        request: MessagesRequest,
        raw: bytes,
        request_id: str,
        *,
        beta: str | None = None,
        version: str | None = None,
    ) -> RelayedResponse | None:
        """Lossless passthrough (``domain/relay.py``) when the model's backend relays bytes, else None."""
        try:
            served = await self._catalog.for_request(principal, request.model)
        except ApiError:
            return None  # the typed path answers and records it
        if relay_of(served.backend) is None:
            return None
        usage = Usage()
        started = time.monotonic()
        container: dict[str, object] | None = None
        try:
            if self._attachments is not None and refers_to_stored(request):
                # Wisegate's file and skill ids mean nothing upstream: sent as their content instead.
                resolved, container = await self._attachments.resolve(
                    principal, request, served.backend.capabilities
                )
                if resolved is not request:
                    request, raw = resolved, request_bytes(resolved)
            fitted = self._fit(served, request)
            with tracing.span("admission"):
                admission = await self._admit(
                    principal, served, fitted, request_id, False, input_tokens=_upper_estimate(len(raw))
                )
        except ApiError as exc:
            streamed = bool(request.stream)
            await record_usage(
                self._limits, principal, request_id, request.model, usage, None, exc.type, streamed, started
            )
            raise
        settle = Settlement(
            self._limits, principal, request_id, served.config.id, bool(request.stream), usage, admission
        )
        settle.span = tracing.start_span("upstream", backend=served.backend.name, model=served.config.id)
        with tracing.current(settle.span):
            relayed = await relay(served, request, fitted, raw, beta, version, settle, container)
        relayed.rate_limits = admission.snapshot if admission is not None else None
        return relayed

    async def create(
        self, principal: Principal, request: MessagesRequest, request_id: str, *, batch: bool = False
    ) -> Message:
        """The whole ``Message``, assembled from the stream."""
        stream = await self.open_stream(principal, request, request_id, streamed=False, batch=batch)
        message = await accumulate(stream)
        if batch:
            message.usage.service_tier = "batch"
        return message

    async def _admit(
        self,
        principal: Principal,
        served: ServedModel,
        request: MessagesRequest,
        request_id: str,
        batch: bool,
        *,
        input_tokens: int | None = None,
    ) -> Admission:
        """Rate limits and spend, before the backend starts (input tokens counted exactly unless given)."""
        if input_tokens is None and served.backend.capabilities.local_token_count:
            input_tokens = await served.backend.count_tokens(request, served.route)
        elif input_tokens is None:  # counting is an upstream round trip: an upper estimate instead
            input_tokens = _upper_estimate(len(request.model_dump_json(exclude_none=True)))
        return await self._limits.admit(
            principal, served.config.id, input_tokens, request.max_tokens, request_id, batch=batch
        )

    async def count_tokens(
        self,
        request: CountTokensRequest,
        principal: Principal | None = None,
        raw: bytes | None = None,
        *,
        beta: str | None = None,
        version: str | None = None,
    ) -> int:
        """Input tokens; with ``raw`` (the client's bytes) a relaying backend forwards them as is."""
        served = await self._catalog.for_request(principal, request.model)
        if self._attachments is not None and principal is not None:
            resolved, _ = await self._attachments.resolve(principal, request, served.backend.capabilities)
            if resolved is not request and raw is not None:
                raw = request_bytes(resolved)  # stored files and skills go up as their content
            request = resolved
        _check_content(served, request)
        if raw is not None and relay_of(served.backend) is not None:
            return await count_relayed(served, request, raw, beta, version)
        # ``compaction`` is ignored here: the count is for the conversation as sent.
        request = fallbacks.drop_markers(expand_summaries(request))
        return await served.backend.count_tokens(request, served.route)

    def _fit(self, served: ServedModel, request: MessagesRequest) -> MessagesRequest:
        _check_content(served, request)
        limit = served.route.max_output_tokens
        if limit is not None and request.max_tokens > limit:
            if not served.config.clamp_max_tokens:
                raise InvalidRequest(
                    f"max_tokens: {request.max_tokens} > {limit}, which is the maximum allowed number of "
                    f"output tokens for {served.config.id}"
                )
            request = request.model_copy(update={"max_tokens": limit})
        return request


def _upper_estimate(json_bytes: int) -> int:
    """Input tokens for admission when counting exactly would cost an upstream round trip: one token
    per 3 bytes of the request's JSON (more than tokenizers yield for most text); settlement then
    corrects the buckets and the spend to the usage the upstream reports."""
    return json_bytes // 3 + 1


def _check_content(served: ServedModel, request: MessagesRequest | CountTokensRequest) -> None:
    caps = served.backend.capabilities
    if not caps.structured_outputs:
        if request.output_config is not None and request.output_config.format is not None:
            raise InvalidRequest(
                f"output_config.format: model '{served.config.id}' does not support structured outputs"
            )
        for index, tool in enumerate(request.tools or []):
            if getattr(tool, "strict", None):
                raise InvalidRequest(
                    f"tools.{index}.strict: model '{served.config.id}' does not support strict tool use"
                )
    for index, item in request.media():
        if isinstance(item, ImageBlockParam) and not caps.images:
            raise InvalidRequest(
                f"messages.{index}.content: model '{served.config.id}' does not support image input"
            )
        if isinstance(item, DocumentBlockParam) and item.source.type == "base64" and not caps.pdf:
            raise InvalidRequest(
                f"messages.{index}.content: model '{served.config.id}' does not support PDF input"
            )


async def accumulate(stream: AsyncIterable[StreamEvent]) -> Message:
    """Fold stream events into the final ``Message`` (what the SDK's ``accumulate_event`` does)."""
    message: Message | None = None
    partial_json: dict[int, str] = {}
    async for event in stream:
        if isinstance(event, MessageStart):
            message = event.message.model_copy(deep=True)
        elif message is None:
            continue
        elif isinstance(event, ContentBlockStart):
            message.content.append(event.content_block.model_copy(deep=True))
            if isinstance(event.content_block, FallbackBlock):  # the model that answers from here on
                message.model = event.content_block.to.model
        elif isinstance(event, ContentBlockDelta):
            block = message.content[event.index]
            delta = event.delta
            if isinstance(delta, TextDelta) and isinstance(block, TextBlock):
                block.text += delta.text
            elif isinstance(delta, InputJsonDelta):
                partial_json[event.index] = partial_json.get(event.index, "") + delta.partial_json
            elif isinstance(delta, ThinkingDelta) and isinstance(block, ThinkingBlock):
                block.thinking += delta.thinking
            elif isinstance(delta, SignatureDelta) and isinstance(block, ThinkingBlock):
                block.signature = delta.signature
            elif isinstance(delta, CompactionDelta) and isinstance(block, CompactionBlock):
                block.content, block.encrypted_content = delta.content, delta.encrypted_content
        elif isinstance(event, MessageDelta):
            message.stop_reason = event.delta.stop_reason
            message.stop_sequence = event.delta.stop_sequence
            message.stop_details = event.delta.stop_details
            message.usage.output_tokens = event.usage.output_tokens
            for name in (
                "input_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "iterations",
                "fallback_credit",
            ):
                value = getattr(event.usage, name)
                if value is not None:
                    setattr(message.usage, name, value)
    if message is None:
        raise ApiError("The backend produced no message.")
    for index, text in partial_json.items():
        block = message.content[index]
        if isinstance(block, ToolUseBlock):
            block.input = _parse_input(text)
    return message


def _parse_input(text: str) -> dict[str, object]:
    try:
        check_depth(text)
        value = json.loads(text) if text.strip() else {}
    except (json.JSONDecodeError, TooDeep):
        return {}
    return value if isinstance(value, dict) else {}
