"""One Messages call, asked once: who asks, what, which model answers, and how it is billed.

``MessageService.call`` resolves the model (the one resolution of a call) and returns a :class:`Call`;
every step after it — attachments, code execution, fitting the request to the model, admission, the
backend or the relay, the settlement — is handed that value rather than its pieces. The relay, which
sends the client's own bytes, derives a new call when it changes the request, so that request and
bytes change together (``domain/relay.py``: ``with_body``)::

    call = await messages.call(principal, request, request_id, streamed=False)
    message = await messages.create(call)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from wisegate.backends.base import relay_of
from wisegate.backends.registry import ServedModel
from wisegate.domain.keys import Principal
from wisegate.protocol.messages import MessagesRequest, Usage


@dataclass(frozen=True, slots=True)
class Wire:
    """The client's own request as it came: its JSON bytes and its ``anthropic-beta`` and
    ``anthropic-version`` headers, sent up as they are when the model's backend relays bytes."""

    body: bytes
    beta: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """A ``/v1/messages`` request with its model resolved, carried through to its settlement.

    ``streamed``: the answer goes out as SSE. ``batch``: a Message Batches request (half price,
    outside the Messages rate limits, service tier ``batch``, not interactive traffic). ``wire``: the
    client's bytes, for a backend that relays them (only ``POST /v1/messages`` sets it).
    ``container``: the container the request's skills were loaded into, echoed in the answer.
    ``hop``: how many fallback models answered before this one (``domain/fallbacks.py``).
    """

    principal: Principal
    request: MessagesRequest
    served: ServedModel
    request_id: str
    streamed: bool
    batch: bool = False
    wire: Wire | None = None
    container: dict[str, object] | None = None
    hop: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def usage_id(self) -> str:
        """The id the usage is recorded under: the request id, ``<id>_fb<n>`` for the n-th fallback."""
        return usage_id(self.request_id, self.hop)

    @property
    def relays(self) -> bool:
        """Whether the client's bytes go up as they are (the model's backend relays; ``domain/relay.py``)."""
        return self.wire is not None and relay_of(self.served.backend) is not None

    def tally(self) -> Usage:
        """A fresh usage tally for the backend to keep current (see ``backends/base.py``)."""
        return tally(self.batch)


def usage_id(request_id: str, hop: int) -> str:
    return f"{request_id}_fb{hop}" if hop else request_id


def tally(batch: bool) -> Usage:
    """An empty usage; a batch request's says so (``service_tier``), which the backend may read."""
    return Usage(service_tier="batch") if batch else Usage()
