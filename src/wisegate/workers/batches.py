"""The batch worker: claim queued batch requests, run them through MessageService, write each result once.

One worker runs inside ``wisegate serve`` (embedded mode); more run as ``wisegate worker`` processes
against PostgreSQL (scaled mode). Each holds a lease on what it claimed and renews it while it works;
a worker killed mid-batch simply stops renewing, and once the lease lapses any worker claims the
request again. The result write is conditional on the request still being queued and leased to the
writer, so re-running a request never produces a second result; its usage record is written under a
request id fixed per batch request (``msgbatch_…:<index>``), and a re-run first removes what an
interrupted attempt recorded, so it is billed once.

Fairness to interactive traffic: at most ``concurrency`` batch requests run at once per worker; on a
*shared* backend (the embedded model: one host-wide model decoding ``WISEGATE_EMBEDDED_SLOTS``
sequences together) a batch request starts only while no interactive request is in flight there, and
at most all the model's slots but one at a time (``services.shared_backends``), so they are decoded
together (continuous batching) and a slot stays free for a user. Batch requests refused for capacity
(429, 529, 504) go back to the queue, and so does one the embedded model crashed on (until its runner
refuses it: ``backends/local/supervisor.py``).

Poison: a request that was running when its worker died is a *suspect*; this worker runs a suspect
only alone (nothing else in flight), so that the next crash is its own. A request held by a worker
that died ``batch_max_crashes`` times ends ``errored`` (``api_error``) without running again, whatever
killed the worker; the count lives in its row (``storage/batches.py``), so it survives restarts.
Its ``params`` are validated here, when it runs: invalid ones end as the ``invalid_request_error``
``/v1/messages`` would answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator, Mapping

from pydantic import ValidationError

from wisegate.domain.batches import BatchService
from wisegate.domain.call import Call
from wisegate.domain.keys import Principal
from wisegate.domain.messages import MessageService
from wisegate.errors import (
    ApiError,
    GatewayTimeout,
    ModelCrashed,
    Overloaded,
    RateLimited,
    from_validation_error,
)
from wisegate.protocol.messages import MessagesRequest
from wisegate.protocol.resources import error_envelope
from wisegate.records.batches import BatchOwner, Claim, Completion
from wisegate.telemetry import metrics
from wisegate.telemetry.logs import request_id_var

log = logging.getLogger("wisegate.batches")

_RETRYABLE = (Overloaded, RateLimited, GatewayTimeout, ModelCrashed)
_CLAIM_CHUNK = 64
_FLUSH_SIZE = 256
_FLUSH_SECONDS = 0.02
_IDLE_POLL_SECONDS = 1.0  # the longest an idle worker waits between two looks at the queue


class BatchWorker:
    def __init__(
        self,
        batches: BatchService,
        messages: MessageService,
        *,
        concurrency: int = 32,
        shared_backends: Mapping[str, int] | None = None,
        poll_seconds: float = 0.2,
        sweep_seconds: float = 1.0,
        name: str | None = None,
    ) -> None:
        self._batches = batches
        self._messages = messages
        self._concurrency = max(1, concurrency)
        # A shared backend's batch requests at once: its slots, taken only while no user waits there.
        self._shared = {name: asyncio.Semaphore(max(1, n)) for name, n in (shared_backends or {}).items()}
        self._poll = poll_seconds
        self._sweep_every = sweep_seconds
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._active: dict[int, asyncio.Task[None]] = {}
        self._done: list[Completion] = []
        self._touched: set[str] = set()
        self._slots_free = asyncio.Event()
        self._unfinished: set[int] = set()
        self._owners: dict[str, BatchOwner | None] = {}
        self._canceling: set[str] = set()
        self._stopping = asyncio.Event()
        self._draining = False
        self._suspect_waiting = False  # finish what runs, then claim a suspect alone
        self._suspect_running = False
        self.waiting_for_interactive = 0

    async def run(self) -> None:
        """Work until :meth:`stop`, or after :meth:`drain` until what is running has finished; then give
        back what is unfinished and flush what is done."""
        claiming = asyncio.create_task(self._claim_loop(), name="batch-claim")
        loops = [
            asyncio.create_task(self._flush_loop(), name="batch-flush"),
            asyncio.create_task(self._heartbeat_loop(), name="batch-heartbeat"),
            asyncio.create_task(self._sweep_loop(), name="batch-sweep"),
        ]
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([claiming, stopping], return_when=asyncio.FIRST_COMPLETED)
            while self._active and not self._stopping.is_set():  # draining: let them finish
                await asyncio.wait([stopping, *self._active.values()], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            claiming.cancel()
            for task in loops:
                task.cancel()
            running = list(self._active.values())
            for task in running:
                task.cancel()
            await asyncio.gather(stopping, claiming, *loops, *running, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._shutdown())

    def drain(self) -> None:
        """Stop claiming; the requests already claimed run to completion (until :meth:`stop`)."""
        self._draining = True

    def stop(self) -> None:
        """Stop now: requests still running are cancelled and given back to the queue."""
        self._stopping.set()

    async def _shutdown(self) -> None:
        await self._flush()
        await self._batches.release(self.name, list(self._unfinished))

    async def _claim_loop(self) -> None:
        """Claim and start requests until :meth:`drain`."""
        idle = 0
        while not self._draining:
            free = self._concurrency - len(self._active)
            want = min(free, _CLAIM_CHUNK)
            claims: list[Claim] = []
            # Claim in chunks: wait until half the slots are free rather than claiming one by one.
            # A suspect (see the module docstring) is claimed only when nothing else runs.
            eager = free * 2 >= self._concurrency and not self._suspect_waiting
            if want > 0 and not self._suspect_running and (not self._active or eager):
                try:
                    claims, self._suspect_waiting = await self._batches.claim(
                        self.name, want, alone=not self._active
                    )
                except Exception:
                    log.exception("claiming batch requests failed")
            for claim in claims:
                self._start(claim)
            if claims and len(claims) == want and len(self._active) < self._concurrency:
                continue
            # Nothing to do: the polls back off (to _IDLE_POLL_SECONDS) while the queue stays empty, so
            # an idle worker does not cost the API process beside it a query every 0.2 s. A batch
            # created in this process wakes it at once; one created elsewhere waits at most that long.
            idle = min(idle + 1, 8) if not claims and not self._active else 0
            poll = min(self._poll * 2**idle, _IDLE_POLL_SECONDS)
            await self._idle(wait_for_slots=bool(self._active), poll=poll)

    def _start(self, claim: Claim) -> None:
        task = asyncio.create_task(self._run(claim))
        self._active[claim.id] = task
        self._unfinished.add(claim.id)
        if claim.crashes > 0:
            self._suspect_running = True
        metrics.BATCH_RUNNING.inc()

        def done(_task: asyncio.Task[None]) -> None:
            metrics.BATCH_RUNNING.dec()
            self._active.pop(claim.id, None)
            if claim.crashes > 0:
                self._suspect_running = False
            if len(self._active) * 2 <= self._concurrency:
                self._slots_free.set()

        task.add_done_callback(done)

    async def _idle(self, *, wait_for_slots: bool, poll: float) -> None:
        """Sleep up to ``poll`` seconds, waking early for a new batch or (when busy) free slots."""
        events = [self._batches.submitted] + ([self._slots_free] if wait_for_slots else [])
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waiters, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        for event in events:
            event.clear()

    async def _run(self, claim: Claim) -> None:
        completion = await self._execute(claim)
        if completion is None:
            self._unfinished.discard(claim.id)
        else:
            metrics.BATCH_DONE.labels(completion.status).inc()
            self._done.append(completion)
            self._touched.add(claim.batch_id)

    async def _owner(self, batch_id: str) -> BatchOwner | None:
        if batch_id not in self._owners:
            if len(self._owners) > 10_000:
                self._owners.clear()
            self._owners[batch_id] = await self._batches.owner(batch_id)
        return self._owners[batch_id]

    async def _execute(self, claim: Claim) -> Completion | None:
        """Run one claimed request; ``None`` when it goes back to the queue."""
        owner = await self._owner(claim.batch_id)
        if owner is None:
            return None
        if claim.batch_id in self._canceling:
            return Completion(claim.id, "canceled", None)
        if self._batches.clock.now() >= owner.expires_at:
            return Completion(claim.id, "expired", None)
        request_id = f"{claim.batch_id}:{claim.position}"
        if claim.crashes >= self._batches.max_crashes:
            if claim.attempts > 1:
                await self._batches.unsettle(request_id)
            log.error(
                "batch request abandoned: its worker died %d times while running it",
                claim.crashes,
                extra={"batch_request_id": request_id},
            )
            return _errored(
                claim,
                "api_error",
                f"This request was abandoned: the worker running it stopped {claim.crashes} times (crashed "
                "or was killed) before it finished, so it is not run again.",
                request_id,
            )
        try:
            request = MessagesRequest.model_validate_json(claim.params)
        except ValidationError as exc:  # params are validated when the request runs, as Anthropic does
            return _errored(claim, "invalid_request_error", from_validation_error(exc).message, request_id)
        if request.stream:
            return _errored(
                claim, "invalid_request_error", "stream: batch requests cannot be streamed", request_id
            )
        if request.thread is not None:
            return _errored(
                claim, "invalid_request_error", "thread: batch requests cannot use a thread", request_id
            )
        with _logs_named(request_id):
            try:
                call = await self._messages.call(
                    Principal(owner.key), request, request_id, streamed=False, batch=True
                )
            except Exception as exc:  # an unknown or retired model, as /v1/messages would answer
                return _failed(claim, exc, request_id)
        backend = call.served.config.backend
        gate = self._shared.get(backend) if backend else None
        try:
            if gate is None:
                return await self._call(claim, call)
            async with gate:
                await self._yield_to_interactive(backend or "")
                if claim.batch_id in self._canceling:
                    return Completion(claim.id, "canceled", None)
                return await self._call(claim, call)
        except _RETRYABLE as exc:
            await asyncio.sleep(min(exc.retry_after or 1.0, 5.0))
            await self._batches.release(self.name, [claim.id])
            return None

    async def _call(self, claim: Claim, call: Call) -> Completion:
        if claim.attempts > 1:
            await self._batches.unsettle(call.request_id)
        with _logs_named(call.request_id):
            try:
                message = await self._messages.create(call)
            except _RETRYABLE:
                raise
            except Exception as exc:
                return _failed(claim, exc, call.request_id)
        result = '{"type":"succeeded","message":' + message.model_dump_json() + "}"
        return Completion(claim.id, "succeeded", result)

    async def _yield_to_interactive(self, backend: str) -> None:
        """Wait while interactive requests are in flight on a shared backend."""
        if not self._messages.interactive_in_flight[backend]:
            return
        self.waiting_for_interactive += 1
        try:
            while self._messages.interactive_in_flight[backend]:
                await asyncio.sleep(0.02)
        finally:
            self.waiting_for_interactive -= 1

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_SECONDS)
            try:
                await self._flush()
            except Exception:
                log.exception("writing batch results failed; retrying")

    async def _flush(self) -> None:
        while self._done:
            chunk, self._done = self._done[:_FLUSH_SIZE], self._done[_FLUSH_SIZE:]
            try:
                await self._batches.complete(self.name, chunk)
            except BaseException:
                self._done[:0] = chunk
                raise
            self._unfinished.difference_update(c.request_id for c in chunk)
        touched, self._touched = self._touched, set()
        for batch_id in touched:
            await self._batches.finish_if_done(batch_id)

    async def _heartbeat_loop(self) -> None:
        every = max(self._batches.lease.total_seconds() / 3, 0.1)
        while True:
            await asyncio.sleep(every)
            if not self._unfinished:
                continue
            try:
                await self._batches.heartbeat(self.name)
            except Exception:
                log.exception("renewing batch leases failed")

    async def _sweep_loop(self) -> None:
        ticks = 0
        while True:
            try:
                # Only a running request asks whether its batch is being canceled.
                self._canceling = await self._batches.canceling() if self._active else set()
                if ticks % max(1, round(self._sweep_every / 0.25)) == 0:
                    await self._batches.sweep()
            except Exception:
                log.exception("batch housekeeping failed")
            ticks += 1
            await asyncio.sleep(0.25)


@contextlib.contextmanager
def _logs_named(request_id: str) -> Iterator[None]:
    """The logs written meanwhile name this batch request."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


def _failed(claim: Claim, exc: Exception, request_id: str) -> Completion:
    """The errored result of a request that raised ``exc``."""
    if isinstance(exc, ApiError):
        return _errored(claim, exc.type, exc.message, request_id)
    log.exception("batch request failed", exc_info=exc, extra={"batch_request_id": request_id})
    return _errored(claim, "api_error", "Internal server error while running this request.", request_id)


def _errored(claim: Claim, error_type: str, message: str, request_id: str) -> Completion:
    envelope = error_envelope(error_type, message, request_id)
    return Completion(claim.id, "errored", json.dumps({"type": "errored", "error": envelope}))
