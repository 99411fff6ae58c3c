"""``wisegate serve --workers N``: N API processes accepting on one listening socket, supervised by
the parent process.

The parent binds the port (``server.listen``), starts the per-host services (``host.py``) and spawns
N workers with ``multiprocessing``'s *spawn* method: each is a fresh interpreter that inherits only the
socket and the environment, builds its own app from the settings (``create_app``) and serves it as a
single server does (``server.run_server``): its own database pool, batch worker, ledger journal
directory and drain. The kernel hands each new connection to one of the workers waiting on the
socket.

Signals: the parent forwards SIGTERM and SIGINT to every worker, so each drains as a lone server does
and a second signal cuts what is left; the workers sit in a process group of their own, so a Ctrl-C in
a terminal reaches them once, through the parent. The parent exits once every worker has, with 0
when they all did. A worker that dies meanwhile (a crash, ``kill -9``, the OOM killer) is replaced
after a back-off, and its live gauges leave the metrics; a worker that cannot start on the first try
stops the server with its exit status (a configuration the checks before it did not catch). When the
parent itself dies without a word (``kill -9``) the kernel kills the workers too
(``PR_SET_PDEATHSIG``), as a container's processes go with it, so the port is free for a restart.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from types import FrameType

from wisegate.telemetry import metrics

log = logging.getLogger("wisegate.supervisor")

_spawn = multiprocessing.get_context("spawn")
_PR_SET_PDEATHSIG = 1
_FIRST_BACKOFF, _MAX_BACKOFF = 0.5, 30.0
_STABLE_SECONDS = 60.0  # a worker that ran this long before dying starts the back-off afresh


@dataclass
class _Worker:
    slot: int
    process: SpawnProcess
    started: Connection  # the worker sends one message on it once it accepts connections
    first: bool  # the slot's first worker (not a replacement)
    since: float
    up: bool = False
    told: bool = False  # the started pipe has said its word (or closed)
    held: list[int] = field(default_factory=list)  # signals for it once it is up (and handles them)


def run_workers(sock: socket.socket, count: int, *, stop_timeout: float) -> int:
    """Serve with ``count`` worker processes on ``sock`` until every worker has exited after a
    SIGTERM/SIGINT; returns the exit status (0: they all drained cleanly). ``stop_timeout``: how long
    after the first signal workers still running are killed (longer than their drain)."""
    return _Supervisor(sock, count, stop_timeout).run()


class _Supervisor:
    def __init__(self, sock: socket.socket, count: int, stop_timeout: float) -> None:
        self._sock = sock
        self._count = count
        self._stop_timeout = stop_timeout
        self._workers: dict[int, _Worker] = {}
        self._restarts: dict[int, tuple[float, float]] = {}  # slot → (when, back-off used)
        self._signals: list[int] = []
        self._stopping_at: float | None = None
        self._status = 0

    def run(self) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self._count):
                self._start(slot, first=True)
            while self._workers or (self._stopping_at is None and self._restarts):
                self._step(wake_read)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_read)
            os.close(wake_write)
        return self._status

    def _on_signal(self, sig: int, _frame: FrameType | None) -> None:
        self._signals.append(sig)

    def _step(self, wake_read: int) -> None:
        waiting: list[Connection | int] = [wake_read]
        for worker in self._workers.values():
            waiting.append(worker.process.sentinel)
            if not worker.told:
                waiting.append(worker.started)
        ready = wait(waiting, timeout=self._timeout())
        if wake_read in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_read, 512)
        while self._signals:
            self._forward(self._signals.pop(0))
        for worker in list(self._workers.values()):
            if not worker.told and worker.started in ready:
                worker.told = True
                with contextlib.suppress(EOFError, OSError):
                    worker.started.recv_bytes()
                    worker.up = True
                for sig in worker.held if worker.up else ():
                    self._signal(worker, sig)
            if worker.process.sentinel in ready or not worker.process.is_alive():
                worker.process.join()
                self._exited(worker)
        now = time.monotonic()
        for slot, (when, _) in list(self._restarts.items()):
            if self._stopping_at is None and now >= when:
                self._start(slot, first=False)
        if self._stopping_at is not None and now - self._stopping_at > self._stop_timeout:
            for worker in self._workers.values():
                log.warning("API worker %d still running after the drain: killing it", worker.process.pid)
                worker.process.kill()
            self._stopping_at = now  # once per stop_timeout at most

    def _timeout(self) -> float:
        if self._stopping_at is not None:
            return max(0.05, self._stopping_at + self._stop_timeout - time.monotonic())
        if self._restarts:
            return max(0.05, min(when for when, _ in self._restarts.values()) - time.monotonic())
        return 60.0

    def _forward(self, sig: int) -> None:
        if self._stopping_at is None:
            self._stopping_at = time.monotonic()
            self._restarts.clear()
            # No more workers will start: the port stays open only as long as a worker listens on it
            # (each closes its copy when its drain's grace ends), so that connections are then refused.
            self._sock.close()
            log.warning("%s: the %d API workers drain and exit", signal.Signals(sig).name, len(self._workers))
        for worker in self._workers.values():
            if worker.up:
                self._signal(worker, sig)
            else:  # still importing and building its app: the signal would end it there
                worker.held.append(sig)

    def _signal(self, worker: _Worker, sig: int) -> None:
        assert worker.process.pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.process.pid, sig)

    def _start(self, slot: int, *, first: bool) -> None:
        started_read, started_write = _spawn.Pipe(duplex=False)
        process = _spawn.Process(
            target=_worker_main,
            args=(self._sock, started_write, os.getpid()),
            name=f"wisegate-api-{slot}",
        )
        process.start()
        started_write.close()
        self._workers[slot] = _Worker(slot, process, started_read, first, time.monotonic())
        self._restarts.pop(slot, None)

    def _exited(self, worker: _Worker) -> None:
        del self._workers[worker.slot]
        worker.started.close()
        pid, code = worker.process.pid, worker.process.exitcode
        assert pid is not None and code is not None
        metrics.process_exited(pid)
        if self._stopping_at is not None:
            if code != 0:
                log.warning("API worker %d exited with status %s while stopping", pid, _status(code))
                self._status = self._status or 1
            return
        if worker.first and not worker.up:
            log.error("API worker %d could not start (%s): stopping", pid, _status(code))
            self._status = code if code > 0 else 3
            self._forward(signal.SIGTERM)
            return
        ran = time.monotonic() - worker.since
        _, backoff = self._restarts.get(worker.slot, (0.0, 0.0))
        backoff = _FIRST_BACKOFF if ran > _STABLE_SECONDS or not backoff else min(backoff * 2, _MAX_BACKOFF)
        log.error(
            "API worker %d exited with %s after %.0f s; starting another in %g s",
            pid,
            _status(code),
            ran,
            backoff,
        )
        self._restarts[worker.slot] = (time.monotonic() + backoff, backoff)


def _status(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"


def _worker_main(sock: socket.socket, started: Connection, parent: int) -> None:
    """One API worker (in a spawned process): the app built from the settings, served on ``sock``."""
    _die_with(parent)
    os.setpgrp()
    from wisegate.app import create_app
    from wisegate.cli.serve import connection_limits
    from wisegate.cli.server import run_server
    from wisegate.settings import Settings
    from wisegate.telemetry import tracing
    from wisegate.telemetry.logs import configure

    settings = Settings()
    configure(settings.log_level, settings.log_format)
    tracing.configure(
        settings.tracing, endpoint=settings.tracing_endpoint, sample_ratio=settings.tracing_sample_ratio
    )

    def up() -> None:
        started.send_bytes(b"up")
        started.close()

    app = create_app(settings)
    try:
        run_server(
            app,
            settings.host,
            settings.port,
            sock=sock,
            drain=app.state.services.drain,
            drain_seconds=settings.drain_seconds,
            drain_grace_seconds=settings.drain_grace_seconds,
            limits=connection_limits(settings),
            on_started=up,
        )
    finally:
        tracing.shutdown()


def _die_with(parent: int) -> None:
    """Ask the kernel to kill this process when the parent dies (Linux); if it already has, exit."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
