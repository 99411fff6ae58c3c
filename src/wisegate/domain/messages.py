"""MessageService: route the model, check what the backend can honour, stream, and settle usage.

``call`` resolves the model once into a :class:`~wisegate.domain.call.Call`, which every step after
is handed. ``open_stream`` returns a :class:`MessageStream` whose first event has already been
produced, so that every error a backend raises before generating becomes a proper HTTP error.
``create`` assembles the non-streaming ``Message`` from the same stream; ``open_relay`` sends the
client's bytes up as they are (``domain/relay.py``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import replace
from functools import partial

import anyio

from wisegate.backends.base import relay_of, tallied
from wisegate.backends.registry import BackendRegistry, ServedModel
from wisegate.domain import fallbacks
from wisegate.domain.attachments import Attachments
from wisegate.domain.call import Call, Wire, tally
from wisegate.domain.catalog import ModelCatalog
from wisegate.domain.code_execution.loop import CodeExecution, Run, code_tool
from wisegate.domain.compaction import compaction_events, expand_summaries, summarization_request
from wisegate.domain.keys import Principal
from wisegate.domain.limits import Admission, LimitService, RateLimitSnapshot
from wisegate.domain.relay import (
    RelayedResponse,
    count_relayed,
    refers_to_stored,
    relay,
    request_bytes,
    with_body,
)
from wisegate.domain.settlement import Settlement, record_refusal, record_usage
from wisegate.errors import ApiError, InvalidRequest, NotFound
from wisegate.protocol.code_execution import ServerToolUseBlock
from wisegate.protocol.content import DocumentBlockParam, ImageBlockParam
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
from wisegate.protocol.json_depth import parse_json
from wisegate.protocol.messages import (
    CompactionBlock,
    CountTokensRequest,
    FallbackBlock,
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
    """The events of one response. Iterate once; closing it early stops the backend and still settles.

    ``usage`` is the tally the backend keeps current (``backends/base.py``); when the response ends,
    however it ends, the settlement receives it."""

    def __init__(
        self, first: StreamEvent, rest: AsyncGenerator[StreamEvent], settle: Settlement, usage: Usage
    ) -> None:
        self._first = first
        self._rest = rest
        self._settle = settle
        self._usage = usage
        self._events = self._run()
        self.rate_limits: RateLimitSnapshot | None = settle.rate_limits

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
                    await self._settle.finish(self._usage)
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
        self._settle.abort(error_type)

    async def aclose(self) -> None:
        """Stop the backend (if still running) and write the usage record, once."""
        await self._events.aclose()
        await self._finish()

    async def _finish(self) -> None:
        await self._rest.aclose()
        await self._settle.finish(self._usage)


class MessageService:
    def __init__(
        self,
        registry: BackendRegistry,
        limits: LimitService,
        *,
        catalog: ModelCatalog | None = None,
        attachments: Attachments | None = None,
        code_execution: CodeExecution | None = None,
    ) -> None:
        self._registry = registry
        self._catalog = catalog or ModelCatalog(registry)
        self._attachments = attachments
        self._code_execution = code_execution
        self._limits = limits
        # Interactive (non-batch) requests being answered, by backend name: batch workers yield to them.
        self.interactive_in_flight: Counter[str] = Counter()

    async def call(
        self,
        principal: Principal,
        request: MessagesRequest,
        request_id: str,
        *,
        streamed: bool,
        batch: bool = False,
        wire: Wire | None = None,
        served: ServedModel | None = None,
    ) -> Call:
        """The call, its model resolved for this principal: the one resolution of a call (``served``:
        already resolved by :meth:`model_for` for ``request.model``). A model it cannot use (unknown,
        not allowed, retired) is recorded as a refused request and raised.

        ``batch``: a Message Batches request (see :class:`~wisegate.domain.call.Call`). ``wire``: the
        client's bytes, which go up as they are when the model's backend relays (:meth:`open_relay`).
        """
        started = time.monotonic()
        if served is None:
            served = await self.model_for(
                principal, request.model, request_id, streamed=streamed, batch=batch
            )
        return Call(principal, request, served, request_id, streamed, batch, wire, started=started)

    async def model_for(
        self, principal: Principal, model: str, request_id: str, *, streamed: bool, batch: bool = False
    ) -> ServedModel:
        """The served model of a call this principal makes, for a caller that needs it before the
        request is whole (:meth:`call` takes it as ``served``); refused as :meth:`call` refuses."""
        started = time.monotonic()
        try:
            return await self._catalog.for_request(principal, model)
        except ApiError as exc:
            await record_usage(
                self._limits, principal, request_id, model, tally(batch), None, exc.type, streamed, started
            )
            raise

    async def open_stream(self, call: Call) -> MessageStream:
        """Start generation; backend errors before the first event propagate as ``ApiError``.

        ``compaction`` requests are answered with a summary (``domain/compaction.py``); ``fallbacks``
        hand a declined request to the next model (``domain/fallbacks.py``).
        """
        return await self._open(call)

    async def _open(
        self, call: Call, *, later: list[Call] | None = None, stands_in: bool = False
    ) -> MessageStream:
        """One model's answer. ``later`` are the calls of the fallbacks after it (built and checked from
        ``fallbacks`` on the first hop), ``stands_in`` is set when it answers for an overloaded model."""
        served, principal, request = call.served, call.principal, call.request
        container: dict[str, object] | None = None
        usage = call.tally()
        run: Run | None = None
        try:
            if later is None:
                later = await self._fallback_attempts(call)
            credit = fallbacks.credit_outcome(request)
            if self._code_execution is not None and code_tool(request) is not None:
                # Wisegate runs the tool: a container with the skills mounted, the loop around the backend.
                run, request = await self._code_execution.begin(principal, request)
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
                admission = await self._admit(call, request)
        except BaseException as exc:
            if run is not None:
                await run.abandon()
            if isinstance(exc, ApiError):
                await record_refusal(self._limits, call, exc.type)
            raise
        on_finish = None
        if not call.batch:
            self.interactive_in_flight[served.backend.name] += 1
            on_finish = partial(self.interactive_in_flight.subtract, [served.backend.name])
        settle = Settlement(self._limits, call, admission, on_finish)
        if run is not None:

            async def admit_round(round_request: MessagesRequest, round_number: int) -> Admission:
                return await self._admit(call, round_request, round_id=f"{call.usage_id}-round{round_number}")

            run.rounds = (admit_round, self._limits.finish_round)
            events = run.stream(served.backend, request, served.route, usage, batch=call.batch)
        else:
            events = tallied(served.backend.stream(request, served.route, batch=call.batch), usage)
        if original.compaction is not None:
            events = compaction_events(events, usage)
        elif later:
            following, rest = later[0], later[1:]

            async def open_next() -> MessageStream:
                return await self._open(_restarted(following), later=rest)

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
            await settle.finish(usage)
            raise ApiError("The backend produced no response.") from None
        except BaseException as exc:
            settle.error_type = exc.type if isinstance(exc, ApiError) else "api_error"
            with anyio.CancelScope(shield=True):
                await events.aclose()
                await settle.finish(usage)
            if later and served.config.fallback_on_overload and fallbacks.is_overload(exc):
                return await self._open(_restarted(later[0]), later=later[1:], stands_in=True)
            raise
        if container is not None and isinstance(first, MessageStart):
            first.message.container = container
        return MessageStream(first, events, settle, usage)

    async def _fallback_attempts(self, call: Call) -> list[Call]:
        """The call of each ``fallbacks`` entry, checked before any model runs: the model is one this
        key may use, and the request is one it can answer (400 naming ``fallbacks.<n>``). Each entry's
        model is resolved here, once; the n-th entry's call is hop n + 1, recorded as its own.

        ``"default"`` (the served model's configured fallbacks) is the server's choice: ``max_tokens`` is
        lowered to a fallback's limit, and a fallback the key may not use is a 404 that does not name
        it, as for an unknown model."""
        request = call.request
        attempts: list[Call] = []
        for index, entry in enumerate(fallbacks.chain(request, call.served.config.fallbacks)):
            try:
                target = await self._catalog.for_request(call.principal, entry.model)
            except NotFound as exc:
                if request.fallbacks == "default":
                    raise NotFound(
                        f'fallbacks: "default": a fallback model of {request.model} is not available to '
                        "this API key; name the fallbacks to use, or leave fallbacks out"
                    ) from None
                raise fallbacks.in_entry(exc, index) from None
            limit = target.route.max_output_tokens
            if request.fallbacks == "default" and limit is not None and request.max_tokens > limit:
                entry = entry.model_copy(update={"max_tokens": limit})
            following = fallbacks.attempt(request, entry, index)
            try:
                _check_structured(target, following)
                following = _fit_max_tokens(target, following)
            except ApiError as exc:
                raise fallbacks.in_entry(exc, index) from None
            attempts.append(
                replace(call, request=following, served=target, wire=None, container=None, hop=index + 1)
            )
        return attempts

    async def open_relay(self, call: Call) -> RelayedResponse:
        """Lossless passthrough (``domain/relay.py``), for a call that ``relays``: the client's bytes
        go up, re-encoded only when they name stored files or skills, or ask more than the model's
        ``max_tokens``."""
        try:
            if self._attachments is not None and refers_to_stored(call.request):
                # Wisegate's file and skill ids mean nothing upstream: sent as their content instead.
                resolved, container = await self._attachments.resolve(
                    call.principal, call.request, call.served.backend.capabilities
                )
                if resolved is not call.request:
                    call = with_body(call, resolved)
                call = replace(call, container=container)
            fitted = self._fit(call.served, call.request)
            if fitted is not call.request:  # clamped to the model's limit
                call = with_body(call, fitted, {"max_tokens": fitted.max_tokens})
            assert call.wire is not None
            with tracing.span("admission"):
                admission = await self._admit(
                    call, call.request, input_tokens=_upper_estimate(len(call.wire.body))
                )
        except ApiError as exc:
            await record_refusal(self._limits, call, exc.type)
            raise
        settle = Settlement(self._limits, call, admission)
        served = call.served
        settle.span = tracing.start_span("upstream", backend=served.backend.name, model=served.config.id)
        with tracing.current(settle.span):
            return await relay(call, settle)

    async def create(self, call: Call) -> Message:
        """The whole ``Message``, assembled from the stream."""
        stream = await self.open_stream(call)
        message = await accumulate(stream)
        if call.batch:
            message.usage.service_tier = "batch"
        return message

    async def _admit(
        self,
        call: Call,
        request: MessagesRequest,
        *,
        round_id: str | None = None,
        input_tokens: int | None = None,
    ) -> Admission:
        """Rate limits and spend for ``request`` (the call's, as its backend will see it) before the
        backend starts; input tokens counted exactly unless given. ``round_id``: a later round's id."""
        served = call.served
        if input_tokens is None and served.backend.capabilities.local_token_count:
            input_tokens = await served.backend.count_tokens(request, served.route)
        elif input_tokens is None:  # counting is an upstream round trip: an upper estimate instead
            input_tokens = _upper_estimate(len(request.model_dump_json(exclude_none=True)))
        return await self._limits.admit(
            call.principal,
            served.config.id,
            input_tokens,
            request.max_tokens,
            round_id or call.usage_id,
            batch=call.batch,
        )

    async def count_tokens(
        self, request: CountTokensRequest, principal: Principal | None = None, wire: Wire | None = None
    ) -> int:
        """Input tokens; with ``wire`` (the client's bytes) a relaying backend forwards them as is."""
        served = await self._catalog.for_request(principal, request.model)
        if self._attachments is not None and principal is not None:
            resolved, _ = await self._attachments.resolve(principal, request, served.backend.capabilities)
            if resolved is not request and wire is not None:
                wire = replace(wire, body=request_bytes(resolved))  # stored files and skills as their content
            request = resolved
        _check_content(served, request)
        if wire is not None and relay_of(served.backend) is not None:
            return await count_relayed(served, request, wire)
        # ``compaction`` is ignored here: the count is for the conversation as sent.
        request = fallbacks.drop_markers(expand_summaries(request))
        return await served.backend.count_tokens(request, served.route)

    def _fit(self, served: ServedModel, request: MessagesRequest) -> MessagesRequest:
        _check_content(served, request)
        return _fit_max_tokens(served, request)


def _restarted(call: Call) -> Call:
    """A fallback's call as its model starts: its latency is counted from here."""
    return replace(call, started=time.monotonic())


def _fit_max_tokens(served: ServedModel, request: MessagesRequest) -> MessagesRequest:
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


def _check_structured(served: ServedModel, request: MessagesRequest | CountTokensRequest) -> None:
    if served.backend.capabilities.structured_outputs:
        return
    if request.output_config is not None and request.output_config.format is not None:
        raise InvalidRequest(
            f"output_config.format: model '{served.config.id}' does not support structured outputs"
        )
    for index, tool in enumerate(request.tools or []):
        if getattr(tool, "strict", None):
            raise InvalidRequest(
                f"tools.{index}.strict: model '{served.config.id}' does not support strict tool use"
            )


def _check_content(served: ServedModel, request: MessagesRequest | CountTokensRequest) -> None:
    _check_structured(served, request)
    caps = served.backend.capabilities
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
                "server_tool_use",
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
        if isinstance(block, ToolUseBlock | ServerToolUseBlock):
            block.input = _parse_input(text)
    return message


def _parse_input(text: str) -> dict[str, object]:
    try:
        value = parse_json(text) if text.strip() else {}
    except ValueError:  # a backend's unfinished or unbounded JSON: the input stays empty
        return {}
    return value if isinstance(value, dict) else {}
