"""Running the app under uvicorn for ``wisegate serve``: the listening socket, the collector tuning,
and the drain on SIGTERM.

The drain (docs/operations.md): on the first SIGTERM ``/ready`` answers 503 at once while the
listener stays open for ``drain_grace_seconds`` (so a load balancer's health check sees it and stops
sending); then the listener closes and requests in flight run to completion. A second SIGTERM (or
SIGINT), or ``drain_seconds`` after the first, cuts the rest off (``domain/drain.py``: an
``overloaded_error`` event, usage settled). The app's shutdown then commits the settlements and gives
back batch claims, and the process exits 0. SIGINT (Ctrl-C) drains the same way without the grace.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from wisegate.cli.connections import ConnectionLimits, protocol_for
from wisegate.domain.drain import Drain
from wisegate.telemetry import metrics

_YOUNG_THRESHOLD = 10_000

log = logging.getLogger("wisegate.server")


class ListenError(Exception):
    """The address cannot be listened on; the message says why in one line."""


def listen(host: str, port: int) -> socket.socket:
    """Bind and listen before anything else starts, so that a taken port is a clear error at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"port {port} on {host} is already in use (another server is running there?); "
                "stop it or choose another with --port / WISEGATE_PORT"
            ) from None
        if exc.errno == errno.EACCES:
            raise ListenError(f"no permission to listen on {host}:{port}; choose a port above 1023") from None
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        drain: Drain | None,
        drain_seconds: float,
        grace: float,
        on_started: Callable[[], None] | None,
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._drain_seconds = drain_seconds
        self._grace = grace
        self._on_started = on_started
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        # Requests in flight keep a few thousand young objects alive, so at the default threshold (700
        # net allocations) a young collection ran every ~9 requests only to promote them: ~10 µs of
        # CPU per request. Garbage without cycles is freed at once either way.
        gc.set_threshold(_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        # What is alive once the app has started (modules, schemas, pools: ~130k objects) lives as long
        # as the process: keep it out of the cyclic collector's full passes. Under load those ran about
        # once a second and walked all of it (65–100 ms each: ~40 µs of CPU per relayed request at
        # 2,000 requests/s, and a stall for every request in flight).
        gc.collect()
        gc.freeze()
        if self.started and self._on_started is not None:
            self._on_started()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's: it would re-raise the signal after shutdown (exit status 143, not 0), and it
        # stops listening at once. Runs as a signal handler: hand over to the loop, do nothing here.
        if self._drain is None or self._loop is None or not self.started:
            self.should_exit = True
            return
        # A fresh context: the signal may have interrupted a request, whose id must not label the drain.
        self._loop.call_soon_threadsafe(self._on_signal, sig, context=contextvars.Context())

    def _on_signal(self, sig: int) -> None:
        assert self._drain is not None and self._loop is not None
        if self._drain.draining:
            log.warning("second signal: cutting off the responses still running")
            self._drain.cut()
            self.should_exit = True
            return
        self._drain.begin()
        metrics.DRAINING.set(1)
        grace = self._grace if sig == signal.SIGTERM else 0.0
        log.warning(
            "draining: /ready answers 503; the listener closes in %g s; responses still running in %g s "
            "are cut off",
            grace,
            self._drain_seconds,
            extra={"signal": signal.Signals(sig).name},
        )
        self._loop.call_later(grace, self._stop_listening)
        self._loop.call_later(self._drain_seconds, self._deadline)

    def _stop_listening(self) -> None:
        self.should_exit = True

    def _deadline(self) -> None:
        assert self._drain is not None
        if not self._drain.is_cut:
            log.warning("drain deadline: cutting off the responses still running")
            self._drain.cut()


def server_config(
    app: ASGIApp, host: str, port: int, limits: ConnectionLimits, drain_seconds: float = 30.0
) -> uvicorn.Config:
    """uvicorn's configuration: our bounded HTTP protocol, no access log (``api/context.py`` logs)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=protocol_for(limits),
        timeout_keep_alive=limits.keep_alive_seconds,  # type: ignore[arg-type]  # float works
        # A backstop only: the drain's own deadline ends every response before this.
        timeout_graceful_shutdown=int(drain_seconds) + 10,
    )


def run_server(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    sock: socket.socket | None = None,
    drain: Drain | None = None,
    drain_seconds: float = 30.0,
    drain_grace_seconds: float = 0.0,
    limits: ConnectionLimits | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, draining as the module says (``drain``: the app's), each
    connection within ``limits`` (``connections.py``). ``on_started`` is called once the app has
    started and the socket accepts."""
    config = server_config(app, host, port, limits or ConnectionLimits(), drain_seconds + drain_grace_seconds)
    server = _Server(config, drain, drain_seconds, drain_grace_seconds, on_started)
    try:
        server.run(sockets=[sock] if sock is not None else None)
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE
