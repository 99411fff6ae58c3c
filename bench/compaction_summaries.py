"""Compaction summaries on the embedded model: how many repeat themselves, how many facts they keep.

Five fixed conversations, each with known facts (names, places, numbers, dates). Three ways to
summarize each, in one run against one ``wisegate serve``:

- ``before``: the summarization prompt and parameters compaction used before (a few sentences, the
  request's sampling, i.e. the backend's defaults), sent as a plain Messages request;
- ``prompt``: today's prompt and parameters (notes one per line, greedy), sent as a plain Messages
  request: what the model writes without the repeat guard;
- ``compaction``: a real ``compaction`` request: today's prompt, greedy, and generation cut at the
  first repeated sentence or line.

For each: summaries with a repeated sentence or line, facts kept (a fact is kept when its word appears
in the summary, without case), summaries that copy the transcript (a ``User:`` or ``Assistant:`` label:
the model went on with the conversation instead of summarizing it), output tokens, seconds.
Run: ``.venv/bin/python bench/compaction_summaries.py [--max-tokens 96] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from typing import Any

import httpx
from embedded_throughput import start_server

from wisegate.domain.compaction import SUMMARY_TASK, summarization_request, without_repeat
from wisegate.protocol.messages import MessagesRequest

MODEL = "smollm2-135m-instruct"
OLD_SYSTEM = "You write short, factual summaries of conversations."
OLD_TASK = (
    "Summarize the conversation above in a few sentences. Keep every name, number, date and decision, "
    "and what the user asked for last. Write only the summary."
)

CONVERSATIONS: list[tuple[list[dict[str, str]], list[str]]] = [
    (
        [
            {"role": "user", "content": "Hi! My name is Maria and I live in Lisbon."},
            {"role": "assistant", "content": "Nice to meet you, Maria! Lisbon is a beautiful city."},
            {"role": "user", "content": "I am planning a trip to Japan in April with my sister Ana."},
            {
                "role": "assistant",
                "content": "April is cherry blossom season, a great time to visit.",
            },
            {"role": "user", "content": "Can you suggest a budget for 10 days?"},
        ],
        ["Maria", "Lisbon", "Japan", "April", "Ana", "10"],
    ),
    (
        [
            {"role": "user", "content": "I run a bakery called Sunrise Breads in Dublin."},
            {"role": "assistant", "content": "That sounds lovely. How can I help with Sunrise Breads?"},
            {"role": "user", "content": "We sell 300 loaves a day and I want to open on Sundays."},
            {"role": "assistant", "content": "Opening on Sundays could add a good share of weekly sales."},
            {"role": "user", "content": "My partner Liam thinks we should hire two more bakers first."},
        ],
        ["Sunrise", "Dublin", "300", "Sundays", "Liam", "two"],
    ),
    (
        [
            {"role": "user", "content": "My laptop is a ThinkPad X1 bought in 2021 and it overheats."},
            {"role": "assistant", "content": "Overheating is often dust in the fan. Have you cleaned it?"},
            {"role": "user", "content": "Yes, last week. It still reaches 95 degrees when I compile code."},
            {"role": "assistant", "content": "Then the thermal paste may be dry after three years."},
            {"role": "user", "content": "Should I replace the paste myself or take it to a shop?"},
        ],
        ["ThinkPad", "2021", "95", "paste", "shop"],
    ),
    (
        [
            {"role": "user", "content": "I am Kenji, a teacher in Osaka, and I teach 28 students."},
            {"role": "assistant", "content": "Hello Kenji! What subject do you teach?"},
            {"role": "user", "content": "Chemistry. The exam is on 12 March."},
            {"role": "assistant", "content": "Then there is time for a revision plan before 12 March."},
            {"role": "user", "content": "Please make a plan with three practice tests."},
        ],
        ["Kenji", "Osaka", "28", "Chemistry", "March", "three"],
    ),
    (
        [
            {"role": "user", "content": "We decided to paint the kitchen green and the hall white."},
            {"role": "assistant", "content": "Green and white work well together. How big is the kitchen?"},
            {"role": "user", "content": "It is 12 square metres and my neighbour Olga lends us a ladder."},
            {"role": "assistant", "content": "For 12 square metres two litres of paint should be enough."},
            {"role": "user", "content": "How long will the paint take to dry?"},
        ],
        ["green", "white", "12", "Olga", "ladder", "dry"],
    ),
]


def _ask(url: str, key: str, body: dict[str, Any]) -> tuple[str, int, float]:
    started = time.perf_counter()
    response = httpx.post(url + "/v1/messages", json=body, headers={"x-api-key": key}, timeout=600)
    response.raise_for_status()
    message = response.json()
    block = message["content"][0] if message["content"] else {}
    text = block.get("content") if block.get("type") == "compaction" else block.get("text")
    return text or "", message["usage"]["output_tokens"], time.perf_counter() - started


def _bodies(messages: list[dict[str, str]], max_tokens: int) -> dict[str, dict[str, Any]]:
    request = {"model": MODEL, "max_tokens": max_tokens, "messages": messages}
    prompt = summarization_request(
        MessagesRequest.model_validate({**request, "compaction": {"type": "summarize"}})
    )
    today = prompt.model_dump(mode="json", exclude_none=True)
    old_text = today["messages"][0]["content"].removesuffix(SUMMARY_TASK) + OLD_TASK
    before = {"model": MODEL, "max_tokens": max_tokens, "system": OLD_SYSTEM,
              "messages": [{"role": "user", "content": old_text}]}  # fmt: skip
    return {"before": before, "prompt": today, "compaction": {**request, "compaction": {"type": "summarize"}}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    parser.add_argument("--show", action="store_true", help="print every summary")
    args = parser.parse_args()
    zero = {"repeats": 0, "kept": 0, "copies": 0, "tokens": 0, "seconds": 0.0}
    totals = {name: dict(zero) for name in ("before", "prompt", "compaction")}
    facts_total = sum(len(facts) for _, facts in CONVERSATIONS)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = start_server(tmp, args.threads)
        try:
            for number, (messages, facts) in enumerate(CONVERSATIONS, 1):
                for name, body in _bodies(messages, args.max_tokens).items():
                    summary, tokens, seconds = _ask(url, key, body)
                    repeats = without_repeat(summary + "\n") is not None
                    kept = sum(fact.lower() in summary.lower() for fact in facts)
                    copies = "User:" in summary or "Assistant:" in summary
                    total = totals[name]
                    total["copies"] += copies
                    total["repeats"] += repeats
                    total["kept"] += kept
                    total["tokens"] += tokens
                    total["seconds"] += seconds
                    print(f"conversation {number} {name:10}: repeats={repeats!s:5} facts {kept}/{len(facts)} "
                          f"copies={copies!s:5} tokens={tokens:3} {seconds:5.1f} s")  # fmt: skip
                    if args.show:
                        print("    " + summary.replace("\n", "\n    "))
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"\n{len(CONVERSATIONS)} conversations, {facts_total} facts, max_tokens {args.max_tokens}")
    for name, total in totals.items():
        print(f"{name:10}: summaries that repeat {total['repeats']}/{len(CONVERSATIONS)}, "
              f"facts kept {total['kept']}/{facts_total}, "
              f"copy the transcript {total['copies']}/{len(CONVERSATIONS)}, "
              f"output tokens {total['tokens']}, "
              f"{total['seconds']:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
