"""Concurrent streams on the embedded model: serial (1 slot) against continuous batching (N slots).

For each of 1, 4, 8 and 16 concurrent streams (greedy, ``--max-tokens`` each, different prompts),
measures the aggregate output tokens/s (all output tokens over the wall time from the first request
sent to the last stream ended) and the slowest time to first token (request sent → first text
delta), on two servers run one after the other in this process's run: ``slots = 1`` (the serial
path: one request generates at a time, the others wait in the queue) and ``slots = --slots``. Then
one stream through the batching server against llama-cpp-python's ``Llama.generate`` called
directly (same prompt tokens, greedy), alternating, for the single-stream ratio.

Each server is ``wisegate serve`` in its own process, read by a minimal streaming HTTP client per
stream (threads). Run:
``.venv/bin/python bench/embedded_concurrency.py [--slots 8] [--max-tokens 128] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time

import httpx
from embedded_throughput import direct, load_direct, start_server

from wisegate.backends.local.prompt import PromptRenderer

TOPICS = [
    "a lighthouse keeper",
    "a dragon who learns to paint",
    "a city under the sea",
    "a robot gardener",
    "a lost violin",
    "a winter market",
    "a desert train",
    "a clockmaker's apprentice",
    "a mountain monastery",
    "a talking river",
    "a library at night",
    "a comet's journey",
    "a baker in Lyon",
    "an island of kites",
    "a forgotten map",
    "a glass forest",
]
CONCURRENCY = (1, 4, 8, 16)


def stream(url: str, key: str, prompt: str, max_tokens: int, out: dict[str, float]) -> None:
    body = {
        "model": "smollm2-135m-instruct",
        "max_tokens": max_tokens,
        "stream": True,
        "temperature": 0,
        "messages": [{"role": "user", "content": prompt}],
    }
    sent = time.perf_counter()
    with httpx.stream(
        "POST", url + "/v1/messages", json=body, headers={"x-api-key": key}, timeout=600
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if "ttft" not in out and line.startswith("event: content_block_delta"):
                out["ttft"] = time.perf_counter() - sent
            if line.startswith("data: ") and '"message_delta"' in line:
                out["tokens"] = json.loads(line[6:])["usage"]["output_tokens"]
    out["sent"], out["ended"] = sent, time.perf_counter()


def round_of(url: str, key: str, streams: int, max_tokens: int) -> tuple[float, float, int]:
    """Aggregate tokens/s, slowest time to first token, and output tokens of ``streams`` at once."""
    results: list[dict[str, float]] = [{} for _ in range(streams)]
    threads = [
        threading.Thread(
            target=stream,
            args=(url, key, f"Write a long story about {TOPICS[i % len(TOPICS)]}.", max_tokens, results[i]),
        )
        for i in range(streams)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    began = min(r["sent"] for r in results)
    ended = max(r["ended"] for r in results)
    tokens = int(sum(r["tokens"] for r in results))
    return tokens / (ended - began), max(r["ttft"] for r in results), tokens


def measure(slots: int, threads: int, max_tokens: int) -> dict[int, tuple[float, float, int]]:
    table: dict[int, tuple[float, float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        options = f"threads = {threads}, slots = {slots}, queue_size = {max(CONCURRENCY)}, n_ctx = 2048"
        proc, url, key = start_server(tmp, threads, options)
        try:
            round_of(url, key, 1, 8)  # warm up
            for streams in CONCURRENCY:
                table[streams] = round_of(url, key, streams, max_tokens)
                print(f"slots={slots} streams={streams} done", file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(20)
    return table


def single_vs_direct(slots: int, threads: int, max_tokens: int, rounds: int) -> tuple[float, float]:
    llm = load_direct(n_ctx=2048, n_threads=threads, n_batch=512)
    renderer = PromptRenderer(llm.metadata["tokenizer.chat_template"])
    via: list[float] = []
    raw: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = start_server(tmp, threads, f"threads = {threads}, slots = {slots}, n_ctx = 2048")
        try:
            round_of(url, key, 1, 8)
            for i in range(rounds):
                prompt = f"Write a long story about {TOPICS[i % len(TOPICS)]}."
                produced, elapsed = direct(llm, renderer, prompt, max_tokens)
                raw.append(produced / elapsed)
                result: dict[str, float] = {}
                stream(url, key, prompt, max_tokens, result)
                via.append(result["tokens"] / (result["ended"] - result["sent"]))
        finally:
            proc.terminate()
            proc.wait(20)
    return statistics.median(via), statistics.median(raw)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=4, help="single-stream rounds against llama-cpp-python")
    args = parser.parse_args()
    before = measure(1, args.threads, args.max_tokens)
    after = measure(args.slots, args.threads, args.max_tokens)
    via, raw = single_vs_direct(args.slots, args.threads, args.max_tokens, args.rounds)

    print(f"{args.max_tokens} tokens a stream, greedy, {args.threads} llama.cpp threads")
    print(
        "| concurrent streams | 1 slot: tokens/s | 1 slot: slowest TTFT "
        f"| {args.slots} slots: tokens/s | {args.slots} slots: slowest TTFT | output tokens |"
    )
    print("|---|---|---|---|---|---|")
    for streams in CONCURRENCY:
        b, a = before[streams], after[streams]
        print(f"| {streams} | {b[0]:.1f} | {b[1]:.2f} s | {a[0]:.1f} | {a[1]:.2f} s | {a[2]} |")
    print(f"{args.slots} slots, 8 streams / 1 stream: {after[8][0] / after[1][0]:.2f}x")
    print(
        f"single stream, {args.slots} slots: {via:.1f} tokens/s; llama-cpp-python directly: {raw:.1f} "
        f"tokens/s; ratio {via / raw:.3f} (median of {args.rounds})"
    )


if __name__ == "__main__":
    main()
