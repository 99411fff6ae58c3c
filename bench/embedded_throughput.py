"""Tokens/s of the embedded model through Wisegate (HTTP + SSE) vs llama-cpp-python called directly.

Through Wisegate, the model runs in its model runner process: the API process sends the job over
the supervisor's Unix socket and relays each token back (docs/operations.md, "The model runner").
Same prompts, same greedy sampling, same prompt tokens (rendered with the same chat template), one
request at a time. The server is ``wisegate serve`` in its own process, read by a minimal streaming
HTTP client (the official SDK's event parsing would compete for the 2 cores with the model and
measure the client, not the gateway). The direct side runs while the server idles.
Run: ``.venv/bin/python bench/embedded_throughput.py [--rounds 3] [--max-tokens 128] [--threads N]``.
Prints wall-clock tokens/s (request start to last token) for each side and their ratio; rounds
alternate sides so machine noise hits both. ``--threads`` (default: the CPU count) sets llama.cpp's
threads on both sides: on a machine whose cores are busy with other work, llama.cpp's threads wait
on each other and 2 threads can be several times slower than 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
from llama_cpp import Llama

from wisegate.backends.local import default_model_path
from wisegate.backends.local.params import model_params, repack_default
from wisegate.backends.local.prompt import PromptRenderer
from wisegate.protocol.messages import MessagesRequest

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how rainbows form.",
    "Describe a walk through a forest in autumn.",
    "Give advice to someone learning to cook.",
]


def load_direct(**kwargs: object) -> Llama:
    """llama-cpp-python's ``Llama`` on the shipped model, loaded with the runner's model parameters
    (``params.py``: no AMX buffers where the CPU advertises AMX), which ``Llama`` takes no argument for."""
    import llama_cpp.llama as high

    default = high.llama_cpp.llama_model_default_params
    high.llama_cpp.llama_model_default_params = lambda: model_params(repack=repack_default())
    try:
        return Llama(model_path=str(default_model_path()), verbose=False, **kwargs)  # type: ignore[arg-type]
    finally:
        high.llama_cpp.llama_model_default_params = default


def direct(llm: Llama, renderer: PromptRenderer, prompt: str, max_tokens: int) -> tuple[int, float]:
    request = MessagesRequest(
        model="m", max_tokens=max_tokens, messages=[{"role": "user", "content": prompt}]
    )
    tokens = llm.tokenize(renderer.render(request, "m").text.encode(), add_bos=False, special=True)
    started = time.perf_counter()
    produced = 0
    for token in llm.generate(
        tokens, top_k=0, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True
    ):
        produced += 1
        if token == llm.token_eos():
            break
        llm.detokenize([token])
        if produced >= max_tokens:
            break
    return produced, time.perf_counter() - started


def through_wisegate(url: str, key: str, prompt: str, max_tokens: int) -> tuple[int, float]:
    body = {
        "model": "smollm2-135m-instruct",
        "max_tokens": max_tokens,
        "stream": True,
        "temperature": 0,
        "messages": [{"role": "user", "content": prompt}],
    }
    started = time.perf_counter()
    produced = 0
    with httpx.stream(
        "POST", url + "/v1/messages", json=body, headers={"x-api-key": key}, timeout=120
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"message_delta"' in line:
                produced = json.loads(line[6:])["usage"]["output_tokens"]
    return produced, time.perf_counter() - started


def start_server(
    data_dir: str, threads: int, options: str | None = None
) -> tuple[subprocess.Popen[str], str, str]:
    """``wisegate serve`` on a free port with the local backend's ``options`` (TOML inline-table body)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = os.path.join(data_dir, "wisegate.toml")
    with open(config, "w") as file:
        inline = options or f"threads = {threads}"
        file.write(f'[backends.local]\ntype = "local"\noptions = {{ {inline} }}\n')
    env = {
        **os.environ,
        "WISEGATE_CONFIG": config,
        "WISEGATE_DATA_DIR": data_dir,
        "WISEGATE_PORT": str(port),
        "WISEGATE_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "wisegate", "serve"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    match = re.search(r"(sk-wg-api01-\S+)", proc.stdout.readline())
    assert match, "the server printed no key"
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url + "/v1/models", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, url, match.group(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 2, help="llama.cpp threads, both sides"
    )
    args = parser.parse_args()

    threads = args.threads
    llm = load_direct(n_ctx=8192, n_threads=threads, n_batch=512)
    renderer = PromptRenderer(llm.metadata["tokenizer.chat_template"])
    results: dict[str, list[float]] = {"wisegate": [], "direct": []}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = start_server(tmp, threads)
        try:
            through_wisegate(url, key, PROMPTS[0], 8)
            for round_no in range(args.rounds):
                for prompt in PROMPTS:
                    produced, elapsed = direct(llm, renderer, prompt, args.max_tokens)
                    results["direct"].append(produced / elapsed)
                    produced, elapsed = through_wisegate(url, key, prompt, args.max_tokens)
                    results["wisegate"].append(produced / elapsed)
                print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(20)
    via = statistics.median(results["wisegate"])
    raw = statistics.median(results["direct"])
    print(f"direct llama-cpp-python : {raw:7.1f} tokens/s (median of {len(results['direct'])})")
    print(f"through wisegate (SSE)  : {via:7.1f} tokens/s (median of {len(results['wisegate'])})")
    print(f"ratio wisegate/direct   : {via / raw:7.3f}  ({threads} llama.cpp threads)")


if __name__ == "__main__":
    main()
