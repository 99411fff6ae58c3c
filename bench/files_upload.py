"""Upload throughput and server memory for large files through ``POST /v1/files``.

The server is ``wisegate serve`` in its own process (scripted backend, local blob store in a temporary
data dir); the client is the official SDK sending bytes generated on the fly. Prints MiB/s per upload
and the server's peak RSS (``VmHWM``) before and after. Linux only (reads ``/proc``).
Run: ``.venv/bin/python bench/files_upload.py [--mib 200] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anthropic
import httpx

from wisegate.domain.keys import KeyService
from wisegate.settings import BackendConfig, ModelConfig, Settings
from wisegate.storage.db import Database, migrate
from wisegate.storage.repos import TenancyRepo


class Generated(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self._left = size
        self._pattern = os.urandom(1 << 16)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left, len(self._pattern))
        buffer[:n] = self._pattern[:n]
        self._left -= n
        return n


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_key(settings: Settings) -> str:
    async def run() -> str:
        db = Database(settings.resolved_database_url)
        try:
            keys = KeyService(TenancyRepo(db))
            org = await keys.bootstrap()
            _, secret = await keys.create_key((await keys.default_workspace(org.id)).id, "bench")
            return secret
        finally:
            await db.close()

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            backends={"scripted": BackendConfig(type="scripted")},
            models=[ModelConfig(id="scripted-1", backend="scripted")],
        )
        migrate(settings.resolved_database_url)
        key = make_key(settings)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {
            **os.environ,
            "WISEGATE_DATA_DIR": data_dir,
            "WISEGATE_PORT": str(port),
            "WISEGATE_BACKENDS": json.dumps({"scripted": {"type": "scripted"}}),
            "WISEGATE_MODELS": json.dumps([{"id": "scripted-1", "backend": "scripted"}]),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "wisegate", "serve"], env=env, stdout=subprocess.DEVNULL
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            while True:
                try:
                    httpx.get(base_url + "/v1/models", headers={"x-api-key": key}, timeout=2)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            client = anthropic.Anthropic(base_url=base_url, api_key=key, timeout=600, max_retries=0)
            client.beta.files.upload(file=("warmup.txt", b"warm", "text/plain"))
            print(f"server peak RSS after start: {peak_rss_mib(server.pid):.0f} MiB")
            size = args.mib << 20
            for round_ in range(args.rounds):
                started = time.perf_counter()
                uploaded = client.beta.files.upload(
                    file=("big.bin", Generated(size), "application/octet-stream")
                )
                seconds = time.perf_counter() - started
                client.beta.files.delete(uploaded.id)
                print(
                    f"round {round_ + 1}: {args.mib} MiB in {seconds:.2f} s = "
                    f"{args.mib / seconds:.0f} MiB/s, server peak RSS {peak_rss_mib(server.pid):.0f} MiB"
                )
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
