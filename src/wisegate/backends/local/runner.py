"""The model runner: the child process that holds one llama.cpp model and generates for every API
worker of the host. Its supervisor (``supervisor.py``) starts it, talks to it over one socket and
restarts it when it dies; a native crash here ends only this process.

Run as ``python -m wisegate.backends.local.runner FD CONFIG`` (by the supervisor only). Messages
(``wire.py`` frames), each naming the job ``id`` the supervisor gave:

- in: ``admit`` (a job: prompt tokens, block boundaries, sampling, grammars…; ``batch``), ``cancel``;
- out: ``ready`` once the model is loaded; per job ``admitted`` (the input side of usage, from the
  prompt cache's plan) or ``overloaded`` (past ``queue_size``), then ``started``, ``chunk``\\ s
  (an engine :data:`~wisegate.backends.local.engine.Chunk` and the output tokens so far), maybe
  ``failed``, and always one final ``done``.

Admission and cancellation are handled on the main thread at once. Generation runs on one thread
that decodes up to ``slots`` jobs together (``batch.py``); a job takes a free slot at the next
decode step, interactive jobs before batch jobs, each kind first come first served. Up to
``queue_size`` more jobs wait for a slot; past that a job is ``overloaded``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from typing import Any

from wisegate.backends.local import wire
from wisegate.backends.local.batch import Batch
from wisegate.backends.local.cache import Boundary, PromptCache
from wisegate.backends.local.engine import Chunk, Job, Sampling
from wisegate.backends.local.params import model_params
from wisegate.protocol.messages import CustomTool, Usage

log = logging.getLogger("wisegate.runner")


class Runner:
    def __init__(self, sock: socket.socket, cache: PromptCache, queue_size: int) -> None:
        self._sock, self._cache, self._queue_size = sock, cache, queue_size
        self._send_lock = threading.Lock()
        self._lock = threading.Condition()
        self._jobs: dict[int, Job] = {}
        self._waiting: dict[bool, deque[int]] = {False: deque(), True: deque()}  # by ``batch``
        self._capacity = queue_size  # slots + queue_size, once serving

    def send(self, message: wire.Message) -> None:
        frame = wire.encode(message)
        with self._send_lock:
            self._sock.sendall(frame)

    def serve(self, batch: Batch) -> None:
        """Handle messages until the supervisor closes the socket (or dies); ``batch`` generates on a
        thread of its own."""
        self._capacity = batch.slots + self._queue_size
        threading.Thread(target=self._generate, args=(batch,), name="wisegate-generate", daemon=True).start()
        while (message := wire.recv(self._sock)) is not None:
            if message["op"] == "admit":
                self._admit(message["id"], message["job"], bool(message.get("batch")))
            elif message["op"] == "cancel":
                self._cancel(message["id"])

    def _admit(self, job_id: int, spec: dict[str, Any], batch: bool) -> None:
        with self._lock:
            if len(self._jobs) >= self._capacity:
                self.send({"id": job_id, "type": "overloaded"})
                return
        job, usage = _job(spec), Usage()
        tokens = job.prompt_tokens
        boundaries = spec.get("boundaries")
        plan = self._cache.plan(tokens, [Boundary(n, ttl) for n, ttl in boundaries]) if boundaries else None
        if plan is not None:
            plan.fill(usage)
            job.cache, job.cache_plan = self._cache, plan
        else:
            usage.input_tokens = len(tokens)
        job.usage = usage
        with self._lock:
            self._jobs[job_id] = job
            self._waiting[batch].append(job_id)
            self._lock.notify()
        created = usage.cache_creation
        self.send(
            {
                "id": job_id,
                "type": "admitted",
                "input_tokens": usage.input_tokens,
                "cache_read_input_tokens": usage.cache_read_input_tokens,
                "created_5m": created.ephemeral_5m_input_tokens,
                "created_1h": created.ephemeral_1h_input_tokens,
            }
        )

    def _cancel(self, job_id: int) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            job.cancel.set()
            for queue in self._waiting.values():
                if job_id in queue:
                    queue.remove(job_id)
                    del self._jobs[job_id]
                    break
            else:
                return  # running: the generation thread ends it
        self._finish(job_id, job)

    def _generate(self, batch: Batch) -> None:
        last_beat = 0.0
        while True:
            joining: list[tuple[int, Job]] = []
            with self._lock:
                while not (batch.busy or self._waiting[False] or self._waiting[True]):
                    self._lock.wait()
                for _ in range(batch.free):
                    queue = self._waiting[False] or self._waiting[True]
                    if not queue:
                        break
                    job_id = queue.popleft()
                    joining.append((job_id, self._jobs[job_id]))
            for job_id, job in joining:
                self.send({"id": job_id, "type": "started"})
                batch.start(job_id, job)
            batch.step()
            now = time.monotonic()
            if now - last_beat >= _BEAT_SECONDS:  # the supervisor's watchdog: a step did return
                self.send({"type": "alive"})
                last_beat = now

    def emit(self, job_id: int, job: Job, chunk: Chunk) -> None:
        self.send({"id": job_id, "type": "chunk", "chunk": chunk, "out": job.usage.output_tokens})

    def ended(self, job_id: int, job: Job, failure: str | None) -> None:
        if failure is not None:
            self.send({"id": job_id, "type": "failed", "message": failure})
        with self._lock:
            del self._jobs[job_id]
        self._finish(job_id, job)

    def _finish(self, job_id: int, job: Job) -> None:
        if job.cache is not None and job.cache_plan is not None:
            job.cache.release(job.cache_plan)
        self.send({"id": job_id, "type": "done", "out": job.usage.output_tokens})


_BEAT_SECONDS = 1.0


def _job(spec: dict[str, Any]) -> Job:
    return Job(
        prompt_tokens=spec["tokens"],
        max_new_tokens=spec["max_new_tokens"],
        limit_reason=spec["limit_reason"],
        sampling=Sampling(*spec["sampling"]),
        stop_sequences=spec["stop_sequences"],
        tool_mode=spec["tool_mode"],
        tools=[CustomTool.model_validate(tool) for tool in spec["tools"]],
        forced_tool=spec["forced_tool"],
        usage=Usage(),
        answer_grammar=spec["answer_grammar"],
        tool_grammars=spec["tool_grammars"],
    )


def main(argv: list[str]) -> None:
    import llama_cpp
    from llama_cpp._internals import LlamaModel
    from llama_cpp._logger import set_verbose

    from wisegate.telemetry.logs import configure

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the supervisor decides
    sock = socket.socket(fileno=int(argv[1]))
    config = json.loads(argv[2])
    configure(config["log_level"], config["log_format"])
    set_verbose(False)
    llama_cpp.llama_backend_init()
    runner = Runner(
        sock, PromptCache(config["cache_max_bytes"], config["cache_min_tokens"]), config["queue_size"]
    )
    try:
        model = LlamaModel(
            path_model=config["model_path"], params=model_params(repack=config["repack"]), verbose=False
        )
        batch = Batch(
            model,
            n_ctx=config["n_ctx"],
            slots=config["slots"],
            threads=config["threads"],
            emit=runner.emit,
            ended=runner.ended,
        )
    except Exception as exc:
        sock.sendall(wire.encode({"type": "load_failed", "message": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)
    runner.send({"type": "ready", "pid": os.getpid()})
    runner.serve(batch)
    os._exit(0)  # the supervisor is gone: no teardown of a model that may be mid-generation


if __name__ == "__main__":
    main(sys.argv)
