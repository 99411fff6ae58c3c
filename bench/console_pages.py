"""How long the web console's pages take, and what the playground adds to a streamed answer.

Starts ``wisegate serve`` (scripted backend, SQLite, in its own process), writes N usage records with
the official SDK, logs in to the console with an admin key, then times each page (median of R GETs,
wall time at the client) and a short answer streamed through the playground against the same answer
streamed from ``/v1/messages`` directly (median of R each, alternating).
Run: ``.venv/bin/python bench/console_pages.py [--requests 300] [--rounds 20]``.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anthropic
import httpx

PAGES = [
    "/console",
    "/console/keys",
    "/console/workspaces",
    "/console/limits",
    "/console/batches",
    "/console/files",
    "/console/playground",
]
CONFIG = """
[backends.scripted]
type = "scripted"

[[models]]
id = "scripted-1"
backend = "scripted"
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.1f} ms"


def main(requests: int, rounds: int) -> None:
    data = Path(tempfile.mkdtemp())
    (data / "wisegate.toml").write_text(CONFIG)
    port = _port()
    env = {
        **os.environ,
        "WISEGATE_DATA_DIR": str(data),
        "WISEGATE_PORT": str(port),
        "WISEGATE_CONFIG": str(data / "wisegate.toml"),
        "WISEGATE_LOG_LEVEL": "WARNING",
    }
    wisegate = str(Path(sys.executable).parent / "wisegate")
    proc = subprocess.Popen([wisegate, "serve"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        key = re.search(r"(sk-wg-api01-\S+)", proc.stdout.readline())
        admin = re.search(r"(sk-wg-admin01-\S+)", proc.stdout.readline())
        assert key and admin
        url = f"http://127.0.0.1:{port}"
        client = anthropic.Anthropic(base_url=url, api_key=key.group(1), max_retries=5)
        for i in range(requests):
            client.messages.create(
                model="scripted-1",
                max_tokens=20,
                messages=[{"role": "user", "content": f"request {i} of the bench"}],
            )
        with httpx.Client(base_url=url, timeout=60) as console, httpx.Client(base_url=url, timeout=60) as api:
            token = re.search(r'name="login_token" value="([^"]+)"', console.get("/console/login").text)
            assert token
            console.post("/console/login", data={"key": admin.group(1), "login_token": token.group(1)})
            print(f"{requests} usage records; median of {rounds} GETs per page:")
            for page in PAGES:
                times = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    assert console.get(page).status_code == 200, page
                    times.append(time.perf_counter() - started)
                print(f"  {page:24} {_median_ms(times)}")
            form = console.get("/console/playground").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
            workspace = re.search(r'name="workspace_id" value="([^"]+)"', form)
            assert csrf and workspace
            body = {
                "csrf_token": csrf.group(1),
                "workspace_id": workspace.group(1),
                "model": "scripted-1",
                "max_tokens": "50",
                "message": "one two three four five six seven eight",
            }
            api_body = {
                "model": "scripted-1",
                "max_tokens": 50,
                "stream": True,
                "messages": [{"role": "user", "content": body["message"]}],
            }
            api_headers = {"x-api-key": key.group(1)}
            direct, through = [], []
            for _ in range(rounds):
                started = time.perf_counter()
                with api.stream("POST", "/v1/messages", json=api_body, headers=api_headers) as r:
                    assert "message_stop" in "".join(r.iter_text())
                direct.append(time.perf_counter() - started)
                started = time.perf_counter()
                with console.stream(
                    "POST", "/console/playground", data=body, headers={"accept": "text/event-stream"}
                ) as response:
                    assert "message_stop" in "".join(response.iter_text())
                through.append(time.perf_counter() - started)
            print(
                f"streamed answer, /v1/messages: {_median_ms(direct)}; "
                f"console playground: {_median_ms(through)}"
            )
    finally:
        proc.terminate()
        proc.wait(20)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    main(args.requests, args.rounds)
