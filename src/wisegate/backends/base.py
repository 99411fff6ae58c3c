"""The backend contract: one async event stream per request, plus declared capabilities.

A backend turns a validated :class:`MessagesRequest` into protocol stream events::

    async for event in backend.stream(request, route, usage):
        ...   # MessageStart, ContentBlockStart/Delta/Stop…, MessageDelta, MessageStop

The stream must start with ``MessageStart`` (input-side usage filled in), emit content blocks in index
order, report cumulative usage in ``MessageDelta`` and end with ``MessageStop``. The caller may stop
iterating at any time and then calls ``aclose()``: the backend must stop generating promptly and
release what it holds. Errors before the first event are raised as :mod:`wisegate.errors` exceptions.
Non-streaming responses are assembled from the same stream by ``domain/messages.py``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A public model id resolved to the backend model that serves it."""

    public_id: str
    upstream_model: str
    max_input_tokens: int | None
    max_output_tokens: int | None


@runtime_checkable
class Backend(Protocol):
    name: str
    capabilities: Capabilities

    async def start(self) -> None:
        """Load models / open connections. Called once in the app's lifespan."""

    async def close(self) -> None:
        """Release everything ``start`` acquired."""

    def stream(
        self, request: MessagesRequest, route: ModelRoute, usage: Usage
    ) -> AsyncGenerator[StreamEvent]:
        """Yield protocol events for one request, ending with ``MessageStop``.

        ``usage`` is the caller's tally: the backend keeps its token counts current while it works,
        so that a stream closed early (client gone) is still accounted for exactly.
        """
        ...

    async def count_tokens(self, request: CountTokensRequest | MessagesRequest, route: ModelRoute) -> int:
        """The whole prompt's tokens for this request, as the Claude API's count_tokens reports them.

        Equals ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens`` that ``stream``
        reports for the same request (counting ignores the prompt cache). An upstream with a counting
        API is asked; otherwise the model's tokenizer counts. Must not wait for generation.
        """
        ...
