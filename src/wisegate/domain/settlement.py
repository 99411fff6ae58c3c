"""Settlement: what one response used, written to the ledger exactly once.

A :class:`Settlement` is made for a :class:`~wisegate.domain.call.Call` when its response starts
(after admission) and handed to whatever carries the response —
:class:`~wisegate.domain.messages.MessageStream` or :class:`~wisegate.domain.relay.RelayedResponse`.
They note the stop reason or error as events pass and, when the response ends (however it ends),
hand it the usage the backend reported: :meth:`Settlement.finish` runs ``on_finish`` (e.g. the
interactive-traffic count going down), ends the backend's trace span and settles that usage with the
limit service. A call refused before its backend started is recorded by :func:`record_refusal`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import anyio

from wisegate.domain.call import Call
from wisegate.domain.keys import Principal
from wisegate.domain.limits import Admission, LimitService, RateLimitSnapshot
from wisegate.protocol.events import MessageDelta, StreamEvent
from wisegate.protocol.messages import Usage
from wisegate.records.usage import UsageRecord
from wisegate.telemetry import tracing

log = logging.getLogger("wisegate.messages")


class Settlement:
    """Notes how a call's response ends and writes its usage record exactly once."""

    def __init__(
        self,
        limits: LimitService,
        call: Call,
        admission: Admission | None = None,
        on_finish: Callable[[], None] | None = None,
    ) -> None:
        self._limits, self._call = limits, call
        self.admission = admission
        self._on_finish = on_finish
        self._started = time.monotonic()
        self.stop_reason: str | None = None
        self.error_type: str | None = None
        self._done = False
        self.span: object = None  # the backend call's trace span, ended here (tracing on)

    @property
    def rate_limits(self) -> RateLimitSnapshot | None:
        """The limits the admission saw, for the response's headers."""
        return self.admission.snapshot if self.admission is not None else None

    def observe(self, event: StreamEvent) -> None:
        if isinstance(event, MessageDelta) and event.delta.stop_reason is not None:
            self.stop_reason = event.delta.stop_reason

    def abort(self, error_type: str) -> None:
        """Record why the response ends before the backend finished (unless it ended already)."""
        if self.stop_reason is None and self.error_type is None:
            self.error_type = error_type

    async def finish(self, usage: Usage) -> None:
        """Settle ``usage``, what the response used; only the first call counts."""
        if self._done:
            return
        self._done = True
        if self._on_finish is not None:
            self._on_finish()
        if self.stop_reason is None and self.error_type is None:
            self.error_type = "client_disconnected"
        tracing.end_span(
            self.span,
            error=self.error_type,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            stop_reason=self.stop_reason,
        )
        call = self._call
        with anyio.CancelScope(shield=True):
            await record_usage(
                self._limits,
                call.principal,
                call.usage_id,
                call.served.config.id,
                usage,
                self.stop_reason,
                self.error_type,
                call.streamed,
                self._started,
                self.admission,
            )


async def record_refusal(limits: LimitService, call: Call, error_type: str) -> None:
    """The usage record of a call refused before its backend started (nothing used): the request
    is invalid for its model, or admission refused it."""
    model = call.request.model
    await record_usage(
        limits,
        call.principal,
        call.usage_id,
        model,
        call.tally(),
        None,
        error_type,
        call.streamed,
        call.started,
    )


async def record_usage(
    limits: LimitService,
    principal: Principal,
    request_id: str,
    model: str,
    usage: Usage,
    stop_reason: str | None,
    error_type: str | None,
    streamed: bool,
    started: float,
    admission: Admission | None = None,
) -> None:
    """Settle ``usage`` (release the admission's holds, debit the cost, write the usage record); a
    failure is logged, never raised: the response it belongs to has been answered already."""
    try:
        record = UsageRecord(
            request_id=request_id,
            organization_id=principal.organization_id,
            workspace_id=principal.workspace_id,
            api_key_id=principal.key.id,
            model=model[:256],
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            service_tier=usage.service_tier or "standard",
            # An upstream's strings, stored as the ledger's columns allow.
            stop_reason=stop_reason[:64] if stop_reason else stop_reason,
            error_type=error_type[:64] if error_type else error_type,
            streamed=streamed,
            latency_ms=int((time.monotonic() - started) * 1000),
            created_at=datetime.now(UTC),
            batch=usage.service_tier == "batch",
            code_execution_requests=usage.code_execution_requests,
            container_ms=usage.container_ms,
        )
        with tracing.span("settlement"):
            await limits.settle(admission, record, usage)
    except Exception:
        log.exception("could not write the usage record", extra={"usage_request_id": request_id})
