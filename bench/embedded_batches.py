"""Message Batches on the embedded model: one slot (one request generates at a time) against N slots
(the batch worker runs all slots but one at once and the model runner decodes them together).

For each server (``slots = 1``, then ``slots = --slots``), submits one batch of ``--requests``
short requests (greedy, ``--max-tokens`` each, different prompts) through the official SDK and
times it from submission to ``processing_status: ended``; prints requests/s and output tokens/s of
each and their ratio (measured in one run, one server after the other). Run:
``.venv/bin/python bench/embedded_batches.py [--slots 4] [--requests 24] [--max-tokens 32]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import anthropic
from embedded_concurrency import TOPICS
from embedded_throughput import start_server


def run_batch(url: str, key: str, requests: int, max_tokens: int) -> tuple[float, int]:
    client = anthropic.Anthropic(base_url=url, api_key=key)
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": f"r{i}",
                "params": {
                    "model": "smollm2-135m-instruct",
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "messages": [
                        {"role": "user", "content": f"Tell a story about {TOPICS[i % len(TOPICS)]}."}
                    ],
                },
            }
            for i in range(requests)
        ]
    )
    started = time.perf_counter()
    while (current := client.messages.batches.retrieve(batch.id)).processing_status != "ended":
        counts = current.request_counts
        print(f"\r  {counts.succeeded + counts.errored}/{requests} done", end="", file=sys.stderr)
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    print(file=sys.stderr)
    tokens = 0
    for result in client.messages.batches.results(batch.id):
        assert result.result.type == "succeeded", result.result
        tokens += result.result.message.usage.output_tokens
    return elapsed, tokens


def measure(slots: int, threads: int, requests: int, max_tokens: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        options = f"threads = {threads}, slots = {slots}, n_ctx = 2048"
        proc, url, key = start_server(tmp, threads, options)
        try:
            run_batch(url, key, 2, 4)  # warm up: the model loaded, the worker polling
            print(f"slots={slots}:", file=sys.stderr)
            return run_batch(url, key, requests, max_tokens)
        finally:
            proc.terminate()
            proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    rows = {slots: measure(slots, args.threads, args.requests, args.max_tokens) for slots in (1, args.slots)}
    print("| slots | batch requests at once | wall s | requests/s | output tokens/s |")
    print("|---|---|---|---|---|")
    for slots, (elapsed, tokens) in rows.items():
        rate, throughput = args.requests / elapsed, tokens / elapsed
        print(f"| {slots} | {max(1, slots - 1)} | {elapsed:.1f} | {rate:.2f} | {throughput:.1f} |")
    (one, _), (many, _) = rows[1], rows[args.slots]
    print(f"requests/s, {args.slots} slots / 1 slot: {one / many:.2f}x")


if __name__ == "__main__":
    main()
