"""The backend contract: one async event stream per request, plus declared capabilities.

A backend turns a validated :class:`MessagesRequest` into protocol stream events, and reports what
it used as it goes (``Usage`` items between the events); :func:`tallied` keeps the caller's tally::

    usage = Usage()
    async for event in tallied(backend.stream(request, route), usage):
        ...   # MessageStart, ContentBlockStart/Delta/Stop…, MessageDelta, MessageStop

The stream must start with ``MessageStart`` (input-side usage filled in), emit content blocks in index
order, report cumulative usage in ``MessageDelta`` and end with ``MessageStop``. The caller may stop
iterating at any time and then calls ``aclose()``: the backend must stop generating promptly and
release what it holds. Errors before the first event are raised as :mod:`wisegate.errors` exceptions.
Non-streaming responses are assembled from the same stream by ``domain/messages.py``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from wisegate.protocol.events import StreamEvent
from wisegate.protocol.messages import CountTokensRequest, MessagesRequest, Usage


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can honour; the domain answers 400 for what it cannot."""

    tools: bool = True
    images: bool = False
    pdf: bool = False
    thinking: bool = False
    # False when ``count_tokens`` is an estimate (no exact tokenizer or counting API for the model);
    # the backend's docstring then says how it estimates.
    exact_token_count: bool = True
    local_token_count: bool = True
    """``count_tokens`` runs in-process (no network): admission may count every request exactly."""
    structured_outputs: bool = False
    """``output_config.format`` and ``strict`` tools are honoured (enforced, passed through or translated)."""
    effort: bool = False
    """``output_config.effort`` reaches the model (else it is accepted and has no effect)."""


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A public model id resolved to the backend model that serves it."""

    public_id: str
    upstream_model: str
    max_input_tokens: int | None
    max_output_tokens: int | None
    api_key: str | None = None  # the upstream key chosen for this attempt (routing key pools)


BackendItem = StreamEvent | Usage
"""What a backend's ``stream`` yields: a protocol event, or a usage report (see ``Backend.stream``)."""


@runtime_checkable
class Backend(Protocol):
    name: str
    capabilities: Capabilities

    async def start(self) -> None:
        """Load models / open connections. Called once in the app's lifespan."""

    async def close(self) -> None:
        """Release everything ``start`` acquired."""

    def stream(
        self, request: MessagesRequest, route: ModelRoute, *, batch: bool = False
    ) -> AsyncGenerator[BackendItem]:
        """Yield protocol events for one request, ending with ``MessageStop``; ``batch`` marks a
        Message Batches request (a backend may schedule it behind interactive ones).

        Between the events, a ``Usage`` reports what the request used so far: the fields it was built
        or assigned with (``model_fields_set``), each a running total; fields it leaves unset keep the
        caller's value. A report comes before the events it accounts for, so that a stream closed
        early (client gone) is still accounted for exactly. Reports are the caller's, not the client's.
        """
        ...

    async def count_tokens(self, request: CountTokensRequest | MessagesRequest, route: ModelRoute) -> int:
        """The whole prompt's tokens for this request, as the Claude API's count_tokens reports them.

        Equals ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens`` that ``stream``
        reports for the same request (counting ignores the prompt cache). An upstream with a counting
        API is asked; otherwise the model's tokenizer counts. Must not wait for generation.
        """
        ...


async def tallied(items: AsyncGenerator[BackendItem], tally: Usage) -> AsyncGenerator[StreamEvent]:
    """The events of a backend's stream, its usage reports folded into ``tally`` as they come.
    Closing it closes the backend's stream."""
    try:
        async for item in items:
            if isinstance(item, Usage):
                for name in item.model_fields_set:
                    setattr(tally, name, getattr(item, name))
            else:
                yield item
    finally:
        await items.aclose()


@dataclass(frozen=True, slots=True)
class RelayRequest:
    """A Messages (or count_tokens) body to forward as is: the client's own JSON bytes.

    ``model`` is the id the body names (the public one); the backend maps it to
    ``route.upstream_model``. ``beta`` and ``version`` are the client's ``anthropic-beta`` and
    ``anthropic-version`` values.
    """

    body: bytes
    stream: bool
    model: str
    beta: str | None = None
    version: str | None = None
    count_tokens: bool = False


@dataclass(slots=True)
class RelayResponse:
    """An upstream's 2xx answer, relayed without re-encoding.

    Exactly one of ``body`` (a whole JSON document) and ``chunks`` (SSE bytes, in upstream framing) is
    set. While ``chunks`` is consumed the backend keeps ``usage`` and ``stop_reason`` current from the
    upstream's own usage fields; ``error_type`` is set when the stream carried an ``error`` event, and
    ``stopped`` once a complete ``message_stop`` frame was fed.
    Whoever consumes ``chunks`` must ``aclose()`` it.
    """

    status: int
    content_type: str
    body: bytes | None = None
    chunks: AsyncGenerator[bytes] | None = None
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    error_type: str | None = None
    stopped: bool = False  # a whole ``message_stop`` frame went by (in the chunk just yielded)


@runtime_checkable
class RawRelay(Protocol):
    """Optional capability of backends that speak the Messages wire format themselves.

    The domain uses it instead of ``stream`` when present, so that fields and events Wisegate does
    not model (new block types, signatures, citations, future events) reach the client untouched.
    """

    async def relay(self, request: RelayRequest, route: ModelRoute) -> RelayResponse:
        """Send ``request`` upstream; upstream failures raise :mod:`wisegate.errors` exceptions."""
        ...


def relay_of(backend: Backend) -> RawRelay | None:
    """``backend`` as a ``RawRelay`` when it has ``relay`` (cheaper than ``isinstance`` on a Protocol)."""
    return backend if callable(getattr(backend, "relay", None)) else None  # type: ignore[return-value]
