"""Requests/s of ``POST /v1/messages/count_tokens`` on the embedded model, idle and while it generates.

Counting tokenises the rendered prompt and never queues for the model's generation thread, so its
rate should barely move while a long generation runs. The server is ``wisegate serve`` in its own
process (see ``embedded_throughput.py``); the client sends requests on ``--concurrency`` connections.
Run: ``.venv/bin/python bench/count_tokens_rps.py [--seconds 5] [--concurrency 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import threading
import time

import httpx
from embedded_throughput import start_server

BODIES = [
    {"messages": [{"role": "user", "content": "Hello, how are you today?"}]},
    {
        "system": "You are a careful assistant. " * 20,
        "messages": [
            {
                "role": "user",
                "content": "Summarise the following text. " + "Lorem ipsum dolor sit amet. " * 60,
            },
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": "Thanks — now in French, s'il vous plaît 🙂"},
        ],
    },
    {
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    },
]


async def hammer(url: str, key: str, seconds: float, concurrency: int) -> tuple[int, float]:
    done = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, timeout=30) as client:

        async def worker(offset: int) -> None:
            nonlocal done
            i = offset
            while time.perf_counter() < deadline:
                body = {"model": "smollm2-135m-instruct", **BODIES[i % len(BODIES)]}
                response = await client.post("/v1/messages/count_tokens", json=body)
                response.raise_for_status()
                done += 1
                i += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return done, time.perf_counter() - started


def generate(url: str, key: str, stop: threading.Event) -> None:
    body = {
        "model": "smollm2-135m-instruct",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}],
    }
    while not stop.is_set():
        try:
            httpx.post(url + "/v1/messages", json=body, headers={"x-api-key": key}, timeout=600)
        except httpx.HTTPError:
            return  # the server is shutting down


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = start_server(tmp)
        try:
            asyncio.run(hammer(url, key, 1.0, 1))
            done, elapsed = asyncio.run(hammer(url, key, args.seconds, args.concurrency))
            print(
                f"count_tokens idle           : {done / elapsed:7.1f} requests/s ({done} in {elapsed:.1f} s)"
            )
            stop = threading.Event()
            busy = threading.Thread(target=generate, args=(url, key, stop), daemon=True)
            busy.start()
            time.sleep(1.0)
            done, elapsed = asyncio.run(hammer(url, key, args.seconds, args.concurrency))
            stop.set()
            print(
                f"count_tokens while generating: {done / elapsed:7.1f} requests/s ({done} in {elapsed:.1f} s)"
            )
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
