"""A large upload is streamed to storage: the server's peak memory stays flat.

The server runs in its own process (``wisegate serve``) so that its peak RSS (``VmHWM``) can be read
from ``/proc``; 200 MB are generated on the fly by the client and sent with the official SDK.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.conftest import free_port, make_key, scripted_settings
from wisegate.storage.db import migrate

SIZE = 200 * 1024 * 1024


class Generated(io.RawIOBase):
    """``size`` bytes of a repeating pattern, produced as they are read (never held in memory)."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._pattern = bytes(range(256)) * 256

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left, len(self._pattern))
        buffer[:n] = self._pattern[:n]
        self._left -= n
        return n


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_200_mb_upload_keeps_server_memory_flat(tmp_path: Path) -> None:
    settings = scripted_settings(tmp_path)
    migrate(settings.resolved_database_url)
    key = make_key(settings)
    port = free_port()
    env = {
        **os.environ,
        "WISEGATE_DATA_DIR": str(tmp_path),
        "WISEGATE_PORT": str(port),
        "WISEGATE_LOG_FORMAT": "text",
        "WISEGATE_BACKENDS": json.dumps({"scripted": {"type": "scripted"}}),
        "WISEGATE_MODELS": json.dumps([{"id": "scripted-1", "backend": "scripted"}]),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "wisegate", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base_url + "/v1/models", headers={"x-api-key": key}, timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError("the server did not start") from None
                time.sleep(0.2)
        client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=300)
        client.beta.files.upload(file=("warmup.txt", b"warm", "text/plain"))
        baseline = peak_rss_kib(server.pid)

        uploaded = client.beta.files.upload(file=("big.bin", Generated(SIZE), "application/octet-stream"))

        peak = peak_rss_kib(server.pid)
        assert uploaded.size_bytes == SIZE
        blob = tmp_path / "files" / next(p.name for p in (tmp_path / "files").iterdir()) / uploaded.id
        assert blob.stat().st_size == SIZE
        grew_mib = (peak - baseline) / 1024
        print(f"server peak RSS {baseline / 1024:.0f} MiB -> {peak / 1024:.0f} MiB for a 200 MiB upload")
        assert grew_mib < 40, f"peak RSS grew by {grew_mib:.0f} MiB while receiving {SIZE >> 20} MiB"
    finally:
        server.terminate()
        server.wait(30)
