"""The runner supervisor: one process per ``local`` backend per host that keeps its model runner
(``runner.py``) alive and lets every API worker of the host reach it over one Unix socket.

The supervisor is plain Python and holds no model, so it outlives the runner's native crashes. It

- starts the runner and restarts it when it exits, waiting ``restart_backoff_seconds`` (0.5) and
  doubling up to ``restart_backoff_max_seconds`` (30) while crashes follow each other; the wait
  starts over once a runner has stayed up for a minute;
- relays each API request (one connection per request: ``generate``, then the runner's messages
  back; closing the connection cancels the job) and answers ``status`` (what ``/ready`` shows);
- when the runner dies, ends every job it held with ``crashed`` (the API answers ``api_error``) and
  counts the crash against each job that was generating; a job whose request (same prompt and
  parameters) has been generating during :data:`CRASH_LIMIT` crashes is ``poisoned``: refused from
  then on without reaching the runner, and the log names its request id;
- answers ``down`` while the runner is (re)starting; the API turns that into 529 ``overloaded_error``.

Who starts it: ``wisegate serve`` calls :func:`start_model_runners` once, before the API workers
start; each worker's backend finds the socket at :func:`runner_socket` (data dir, host name, backend
name).
When none answers there (an app built in-process, as the tests do), the backend starts its own and
stops it on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wisegate.backends.local import wire
from wisegate.settings import BackendConfig, Settings

CRASH_LIMIT = 3
"""Crashes of the runner while one request was generating after which that request is refused."""
_POISON_SECONDS = 3600.0  # how long crashes are remembered per request
_STABLE_SECONDS = 60.0  # up this long, the back-off starts over
_TERMINAL = frozenset({"done", "overloaded", "crashed", "poisoned", "down"})
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes
# Not ``-m wisegate.backends.local.supervisor``: the package imports this module before runpy would
# run it a second time as ``__main__``.
_MAIN = "import sys; from wisegate.backends.local.supervisor import main; main(sys.argv)"
_RUNNER_CONFIG = (
    "model_path",
    "n_ctx",
    "threads",
    "queue_size",
    "slots",
    "cache_max_bytes",
    "cache_min_tokens",
    "repack",
    "log_level",
    "log_format",
)

log = logging.getLogger("wisegate.runner")


def runner_socket(data_dir: Path, backend: str) -> Path:
    """Where the runner of ``backend`` is reached on this host: ``<data_dir>/runners/<host
    name>/<backend>.sock``, or a name in the temporary directory derived from it when that path is too
    long for a socket. The host's name keeps apart the nodes that share one data directory (a shared
    volume): each reaches its own runner, and a node that stops removes only its own socket."""
    path = data_dir.resolve() / "runners" / (socket.gethostname() or "localhost") / f"{backend}.sock"
    if len(str(path).encode()) <= _SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"wisegate-runner-{digest}.sock"


def with_runner_sockets(settings: Settings) -> dict[str, BackendConfig]:
    """The configured backends, each ``local`` one told where its runner is and how to log."""
    configured: dict[str, BackendConfig] = {}
    for name, config in settings.backends.items():
        if config.type == "local":
            runner = {
                "socket": str(runner_socket(settings.data_dir, name)),
                "log_level": settings.log_level,
                "log_format": settings.log_format,
                "slots": settings.embedded_slots,
            }
            config = config.model_copy(update={"options": {"runner": runner, **config.options}})
        configured[name] = config
    return configured


def start_model_runners(settings: Settings) -> list[subprocess.Popen[bytes]]:
    """Start one supervisor (and so one model runner) per ``local`` backend; for ``wisegate serve``'s
    parent process, before any API worker starts. Stop them with :func:`stop_model_runners`."""
    from wisegate.backends.local import LocalBackend

    started: list[subprocess.Popen[bytes]] = []
    for name, config in with_runner_sockets(settings).items():
        if config.type == "local":
            runner = LocalBackend(name, config.options).runner_config()
            started.append(process := spawn(runner))
            # Answering (the model may still be loading) before any API worker looks for it there.
            deadline = time.monotonic() + 30
            while asyncio.run(status(runner["socket"])) is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    stop_model_runners(started)
                    raise RuntimeError(f"the model runner supervisor of backend {name!r} did not start")
                time.sleep(0.05)
    return started


def stop_model_runners(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn(config: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start a supervisor process for ``config`` (``LocalBackend.runner_config()``)."""
    Path(config["socket"]).parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", _MAIN, json.dumps(config)],
        stdin=subprocess.DEVNULL,
    )


async def status(path: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The supervisor's ``status`` answer, or ``None`` when none answers at ``path``."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(wire.encode({"op": "status"}))
        return await asyncio.wait_for(wire.read(reader), timeout)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()


def fingerprint(job: dict[str, Any]) -> str:
    """The identity of a request as the runner sees it (prompt tokens and every parameter)."""
    return hashlib.sha256(json.dumps(job, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(eq=False)
class _Job:
    id: int
    fingerprint: str
    request_id: str | None
    inbox: asyncio.Queue[wire.Message] = field(default_factory=asyncio.Queue)
    started: bool = False


class Supervisor:
    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._name: str = config["name"]
        self._path: str = config["socket"]
        self._state = "starting"
        self._problem: str | None = None
        self._pid: int | None = None
        self._restarts = 0
        self._retry_at = 0.0
        self._child: asyncio.StreamWriter | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._jobs: dict[int, _Job] = {}
        self._next_id = 0
        self._crashes: dict[str, tuple[int, float]] = {}  # fingerprint → (crashes, last crash)
        self._stop = asyncio.Event()
        self._stopping = False
        self._heard = 0.0  # loop time of the runner's last message

    async def run(self) -> None:
        """Serve until SIGTERM or until the process that started this one exits."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        # Ctrl-C reaches the whole process group: the server drains first, then stops this process.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        server = await asyncio.start_unix_server(self._connection, path=self._path)
        os.chmod(self._path, 0o600)
        tasks = [asyncio.create_task(self._keep_running()), asyncio.create_task(self._watch_parent())]
        await self._stop.wait()
        self._stopping = True
        server.close()
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    async def _watch_parent(self) -> None:
        parent = os.getppid()
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        log.warning("the process that started the model runner's supervisor is gone; stopping")
        self._stop.set()

    async def _keep_running(self) -> None:
        base = float(self._config["restart_backoff_seconds"])
        delay = base
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._run_child()
            except Exception:
                log.exception("running the model runner of backend %r failed", self._name)
            if loop.time() - started >= _STABLE_SECONDS:
                delay = base
            self._state = "restarting"
            self._retry_at = time.time() + delay
            log.warning("restarting the model runner of backend %r in %g s", self._name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, float(self._config["restart_backoff_max_seconds"]))
            self._restarts += 1

    async def _run_child(self) -> None:
        ours, theirs = socket.socketpair()
        child = {k: self._config[k] for k in _RUNNER_CONFIG}
        self._state = "starting"
        self._process = process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wisegate.backends.local.runner",
            str(theirs.fileno()),
            json.dumps(child),
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        loop = asyncio.get_running_loop()
        self._heard = loop.time()
        watchdog = asyncio.create_task(self._watch_stall(process))
        try:
            while (message := await wire.read(reader)) is not None:
                self._heard = loop.time()
                if "id" in message:
                    self._deliver(message)
                elif message["type"] == "ready":
                    self._state, self._pid, self._problem, self._child = "up", message["pid"], None, writer
                    log.info("the model runner of backend %r is up (pid %d)", self._name, self._pid)
                elif message["type"] == "load_failed":
                    self._problem = f"the model did not load: {message['message']}"
                    log.error("backend %r: %s", self._name, self._problem)
        finally:
            watchdog.cancel()
            self._child = None
            writer.close()
            code = await process.wait()
            self._ended(code)

    async def _watch_stall(self, process: asyncio.subprocess.Process) -> None:
        """Kill a runner that generates for someone and has said nothing for ``stall_seconds``: a
        native call that does not return (a grammar whose stacks explode, a hung kernel) would
        otherwise hold every request of the model for good, and a client's cancel cannot reach it.
        The runner says ``alive`` at least once a second while it steps; the requests it was
        generating end as a crash does (counted against each, refused after the third)."""
        limit = float(self._config["stall_seconds"])
        loop = asyncio.get_running_loop()
        while process.returncode is None:
            await asyncio.sleep(min(1.0, limit / 4))
            silent = loop.time() - self._heard
            if silent > limit and any(job.started for job in self._jobs.values()):
                self._problem = f"the model runner made no progress for {silent:.0f} s while generating"
                log.error("backend %r: %s; killing it", self._name, self._problem)
                process.kill()
                return

    def _ended(self, code: int) -> None:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        self._pid = None
        if self._stopping:
            return
        if self._problem is None:
            self._problem = f"the model runner exited ({how})"
        log.error(
            "the model runner of backend %r exited (%s); %d requests ended", self._name, how, len(self._jobs)
        )
        now = time.time()
        self._crashes = {fp: c for fp, c in self._crashes.items() if now - c[1] < _POISON_SECONDS}
        for job in self._jobs.values():
            crashes = 0
            if job.started:
                crashes = self._crashes.get(job.fingerprint, (0, now))[0] + 1
                self._crashes[job.fingerprint] = (crashes, now)
            if crashes >= CRASH_LIMIT:
                log.error(
                    "request %s crashed the model runner of backend %r %d times; it is not run again",
                    job.request_id,
                    self._name,
                    crashes,
                    extra={"request_id": job.request_id},
                )
                job.inbox.put_nowait({"type": "poisoned", "crashes": crashes})
            else:
                job.inbox.put_nowait({"type": "crashed", "crashes": crashes})
        self._jobs.clear()

    def _deliver(self, message: wire.Message) -> None:
        job = self._jobs.get(message["id"])
        if job is None:
            return
        kind = message["type"]
        if kind == "started":
            job.started = True
            return
        if kind in _TERMINAL:
            del self._jobs[job.id]
        job.inbox.put_nowait(message)

    def status(self) -> wire.Message:
        return {
            "state": self._state,
            "pid": self._pid,
            "restarts": self._restarts,
            "problem": self._problem,
            "retry_in": max(0.0, self._retry_at - time.time()) if self._state == "restarting" else 0.0,
            "serving": [job.request_id for job in self._jobs.values() if job.started],
            "queued": sum(not job.started for job in self._jobs.values()),
        }

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await wire.read(reader)
            if request is None:
                return
            if request["op"] == "status":
                writer.write(wire.encode(self.status()))
            elif request["op"] == "generate":
                await self._generate(request, reader, writer)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _generate(
        self, request: wire.Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        key = fingerprint(request["job"])
        crashes = self._crashes.get(key, (0, 0.0))[0]
        if crashes >= CRASH_LIMIT:
            log.error(
                "request %s is refused: the same request crashed the model runner of backend %r %d times",
                request.get("request_id"),
                self._name,
                crashes,
                extra={"request_id": request.get("request_id")},
            )
            writer.write(wire.encode({"type": "poisoned", "crashes": crashes}))
            return
        if self._child is None:
            writer.write(wire.encode({"type": "down", **self.status()}))
            return
        self._next_id += 1
        job = self._jobs[self._next_id] = _Job(self._next_id, key, request.get("request_id"))
        self._child.write(
            wire.encode({"op": "admit", "id": job.id, "job": request["job"], "batch": request.get("batch")})
        )
        # The API side sends nothing more: any read completing means it hung up (cancel).
        hangup = asyncio.ensure_future(reader.read(1))
        hangup.add_done_callback(lambda _: job.inbox.put_nowait({"type": "hangup"}))
        try:
            while (message := await job.inbox.get())["type"] != "hangup":
                writer.write(wire.encode(message))
                if message["type"] in _TERMINAL:
                    return
                if writer.transport.get_write_buffer_size() > 1 << 16:
                    await writer.drain()
            if job.id in self._jobs and self._child is not None:
                self._child.write(wire.encode({"op": "cancel", "id": job.id}))
        finally:
            hangup.cancel()


def main(argv: list[str]) -> None:
    from wisegate.telemetry.logs import configure

    config = json.loads(argv[1])
    configure(config["log_level"], config["log_format"])
    asyncio.run(Supervisor(config).run())


if __name__ == "__main__":
    main(sys.argv)
