"""Message Batches orchestration throughput and the server's peak memory, 1k vs 10k requests.

Runs ``wisegate serve`` (in-process batch worker) on the instant scripted backend, so what is
measured is Wisegate's own work: parsing and storing the batch, claiming, running each request through
MessageService (usage records included), writing results, and streaming the results file. Each size
runs in a fresh server process, so peak RSS (VmHWM) can be compared across sizes.

    .venv/bin/python bench/batch_throughput.py --sizes 1000 10000
    .venv/bin/python bench/batch_throughput.py --postgres   # a fresh database per size on 127.0.0.1:5432
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _body(size: int) -> Iterator[bytes]:
    yield b'{"requests":['
    for i in range(size):
        item = {
            "custom_id": f"req-{i}",
            "params": {
                "model": "scripted-1",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": f"request {i}: the quick brown fox jumps"}],
            },
        }
        yield (b"," if i else b"") + json.dumps(item).encode()
    yield b"]}"


def _pg(statement: str) -> None:
    import asyncio

    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(go())


def run_on_postgres(size: int, concurrency: int) -> dict[str, float]:
    name = f"wisegate_bench_{uuid.uuid4().hex[:10]}"
    _pg(f'CREATE DATABASE "{name}"')
    try:
        return run(size, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", concurrency)
    finally:
        _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(size: int, database_url: str | None, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "wisegate.toml"
        config.write_text(
            '[backends.scripted]\ntype = "scripted"\n\n[[models]]\nid = "scripted-1"\nbackend = "scripted"\n'
        )
        port = _free_port()
        env = {
            **os.environ,
            "WISEGATE_CONFIG": str(config),
            "WISEGATE_DATA_DIR": str(Path(tmp) / "data"),
            "WISEGATE_PORT": str(port),
            "WISEGATE_LOG_LEVEL": "WARNING",
            "WISEGATE_BATCH_CONCURRENCY": str(concurrency),
        }
        if database_url:
            env["WISEGATE_DATABASE_URL"] = database_url
        server = subprocess.Popen(
            [sys.executable, "-m", "wisegate", "serve"], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            key = re.search(r"(sk-wg-api01-\S+)", server.stdout.readline())
            assert key, "run against an empty database (the bench needs the first key)"
            base = f"http://127.0.0.1:{port}"
            client = httpx.Client(base_url=base, headers={"x-api-key": key.group(1)}, timeout=600)
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/v1/models")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            idle_rss = _peak_rss_mb(server.pid)
            started = time.perf_counter()
            created = client.post("/v1/messages/batches", content=_body(size)).json()
            submitted = time.perf_counter()
            cpu_before = _cpu_seconds(server.pid)
            while True:
                batch = client.get(f"/v1/messages/batches/{created['id']}").json()
                if batch["processing_status"] == "ended":
                    break
                time.sleep(0.05)
            ended = time.perf_counter()
            cpu = _cpu_seconds(server.pid) - cpu_before
            lines = 0
            with client.stream("GET", batch["results_url"]) as response:
                for chunk in response.iter_bytes():
                    lines += chunk.count(b"\n")
            downloaded = time.perf_counter()
            assert lines == size and batch["request_counts"]["succeeded"] == size, batch
            return {
                "size": size,
                "submit_s": submitted - started,
                "process_s": ended - submitted,
                "requests_per_s": size / (ended - submitted),
                "requests_per_cpu_s": size / cpu,
                "results_s": downloaded - ended,
                "idle_rss_mb": idle_rss,
                "peak_rss_mb": _peak_rss_mb(server.pid),
            }
        finally:
            server.terminate()
            server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("size\tsubmit s\tprocess s\trequests/s\trequests/CPU-s\tresults s\tidle RSS MB\tpeak RSS MB")
    for size in args.sizes:
        r = run_on_postgres(size, args.concurrency) if args.postgres else run(size, None, args.concurrency)
        print(
            f"{size}\t{r['submit_s']:.2f}\t{r['process_s']:.2f}\t{r['requests_per_s']:.0f}\t"
            f"{r['requests_per_cpu_s']:.0f}\t"
            f"{r['results_s']:.2f}\t{r['idle_rss_mb']:.0f}\t{r['peak_rss_mb']:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
