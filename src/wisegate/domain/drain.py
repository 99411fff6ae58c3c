"""Draining a server process before it exits (SIGTERM): what every room in the process checks.

``begin`` is called on the first SIGTERM: ``/ready`` answers 503 at once (the load balancer stops
sending new requests), the batch worker stops claiming, and requests in flight go on. ``cut`` is
called on a second SIGTERM or when ``WISEGATE_DRAIN_SECONDS`` have passed: responses still running
end with an ``overloaded_error`` (an SSE ``event: error`` in a stream) and are settled as usual.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from wisegate.errors import Overloaded


class ShuttingDown(Overloaded):
    """The server cut this response off while shutting down; the client may retry elsewhere."""

    def __init__(self) -> None:
        super().__init__("The server is shutting down and ended this response early; retry the request.")


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self.started_at: float | None = None
        self._cut: asyncio.Event | None = None
        self._subscribers: set[Callable[[], None]] = set()
        self._on_begin: list[Callable[[], None]] = []

    def bind(self) -> None:
        """Create the event on the serving loop (call from the app's startup)."""
        self._cut = asyncio.Event()

    def begin(self) -> None:
        if not self.draining:
            self.draining = True
            self.started_at = time.monotonic()
            for callback in self._on_begin:
                callback()

    def on_begin(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the drain begins (the batch worker stops claiming then)."""
        self._on_begin.append(callback)

    def cut(self) -> None:
        self.begin()
        if self._cut is not None:
            self._cut.set()
        for callback in list(self._subscribers):
            callback()
        self._subscribers.clear()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the loop) when the drain cuts; returns the unsubscribe function.
        Cheaper than a task waiting on :meth:`wait_cut`, for the hot path."""
        if self.is_cut:
            asyncio.get_running_loop().call_soon(callback)
            return lambda: None
        self._subscribers.add(callback)
        return lambda: self._subscribers.discard(callback)

    @property
    def is_cut(self) -> bool:
        return self._cut is not None and self._cut.is_set()

    async def wait_cut(self) -> None:
        """Return once ``cut`` was called (never, for a server that is not shutting down)."""
        if self._cut is None:
            self._cut = asyncio.Event()
        await self._cut.wait()
