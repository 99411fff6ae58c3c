"""Time to first token with a long shared prefix on the embedded model: cold vs read from the prompt cache.

Each round uses a new long system prompt (so neither the prompt cache nor llama.cpp's reuse of the
previous prompt can help the cold request), marked with ``cache_control``; the cold request writes
the prefix, then a request with a different question reads it. TTFT is measured from sending the
request to the first ``content_block_delta`` over SSE. A request between rounds evicts llama.cpp's own
last-prompt reuse. The server is ``wisegate serve`` in its own process.
Run: ``.venv/bin/python bench/prompt_cache_ttft.py [--rounds 3] [--prefix-words 800]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import uuid
from typing import Any

import httpx
from embedded_throughput import start_server


def ttft(url: str, key: str, system: str, question: str) -> tuple[float, dict[str, Any]]:
    body = {
        "model": "smollm2-135m-instruct",
        "max_tokens": 4,
        "stream": True,
        "temperature": 0,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": question}],
    }
    started = time.perf_counter()
    first: float | None = None
    usage: dict[str, Any] = {}
    with httpx.stream("POST", url + "/v1/messages", json=body, headers={"x-api-key": key}, timeout=600) as r:
        for line in r.iter_lines():
            if first is None and line.startswith("data: ") and '"content_block_delta"' in line:
                first = time.perf_counter() - started
            if line.startswith("data: ") and '"message_start"' in line:
                usage = httpx.Response(200, content=line[6:]).json()["message"]["usage"]
    assert first is not None, "no content arrived"
    return first, usage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefix-words", type=int, default=800)
    args = parser.parse_args()
    cold: list[float] = []
    warm: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = start_server(tmp)
        try:
            for round_no in range(args.rounds):
                words = f"Reference manual {uuid.uuid4()}: " + " ".join(
                    f"clause-{i} applies to section {i % 37}." for i in range(args.prefix_words // 5)
                )
                seconds, usage = ttft(url, key, words, "What does clause-7 apply to?")
                cold.append(seconds)
                print(f"round {round_no + 1} cold  : {seconds:6.2f} s  {usage}")
                ttft(url, key, "Unrelated short prompt to move llama.cpp's own prefix reuse away.", "Hi")
                seconds, usage = ttft(url, key, words, "And clause-12?")
                warm.append(seconds)
                print(f"round {round_no + 1} cached: {seconds:6.2f} s  {usage}")
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"TTFT cold   : {c:6.2f} s (median of {len(cold)})")
    print(f"TTFT cached : {w:6.2f} s (median of {len(warm)})")
    print(f"ratio cold/cached: {c / w:6.1f}")


if __name__ == "__main__":
    main()
