"""``wisegate serve`` in subprocesses, configured by environment, for crash and multi-process tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SCRIPTED_MODEL, free_port


def scripted_env(data_dir: Path, **extra: Any) -> dict[str, str]:
    """Environment for a server on the scripted backend; ``extra`` values are JSON-encoded if needed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WISEGATE_", "ANTHROPIC_"))}
    env.update(
        WISEGATE_DATA_DIR=str(data_dir),
        WISEGATE_LOG_LEVEL="WARNING",
        WISEGATE_MODELS=json.dumps(
            [{"id": SCRIPTED_MODEL, "backend": "scripted", "max_output_tokens": 4096}]
        ),
    )
    for name, value in extra.items():
        env[f"WISEGATE_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


class ServerProcess:
    def __init__(self, env: dict[str, str], key: str, log: Path, *args: str, timeout: float = 90) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wisegate", "serve", "--port", str(self.port), *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wisegate serve exited: {log.read_text()[-2000:]}")
            try:
                if (
                    httpx.get(self.base_url + "/v1/models", headers={"x-api-key": key}, timeout=2).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("wisegate serve did not start")
            time.sleep(0.1)

    def kill(self) -> None:
        """``kill -9``: no shutdown, no flushing."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def api_workers(pid: int) -> list[int]:
    """The API workers of ``wisegate serve --workers N`` running as ``pid`` (its spawned children, not
    multiprocessing's resource tracker)."""
    found = []
    for child in children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


def connections(pid: int, port: int) -> int:
    """How many established TCP connections to local ``port`` process ``pid`` holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
                count += 1
    return count
