"""The model runner's side of the embedded model: what one request does with its sequence —
detokenising, stop sequences, tool calls, prompt-cache restore and writes.

``Engine.run(job, seq)`` is one request's program: a generator that the batch (``batch.py``) drives
on the runner's generation thread, side by side with the programs of the other requests it holds. It
yields two kinds of things:

- :data:`Chunk` tuples, which the async side turns into protocol events:

      ("text", str)                      visible text
      ("tool", tool_use_id, name)        a tool call begins
      ("json", str)                      a piece of the tool input JSON
      ("end", stop_reason, stop_sequence)

- :data:`Step`\\ s, what it asks of the batch next: :class:`Sample` (make the sequence's context
  these tokens, then sample one token under this grammar), :data:`NEXT` (feed the token just
  sampled, sample another) or :class:`Prefill` (make the context these tokens, sample nothing). The
  batch resumes the program after the decode that answers the step, with the sampled token in
  ``seq.token``.

Grammars come ready-made and verified in the job (``grammar.py`` builds and bounds them before
generation starts); the batch only samples under them.
"""

from __future__ import annotations

import codecs
import json
import logging
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

import llama_cpp
from llama_cpp._internals import LlamaModel

from wisegate.backends.local.cache import CachePlan, PromptCache
from wisegate.backends.local.prompt import (
    SCAFFOLD_ECHOES,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    TOOL_RESPONSE_SPAN,
)
from wisegate.backends.local.text import SpanFilter, StopMatcher
from wisegate.protocol.messages import CustomTool, Usage, new_id

log = logging.getLogger("wisegate.local")

Chunk = tuple[str, ...] | tuple[str, str | None, str | None]
ToolMode = Literal["none", "auto", "forced"]


@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int


@dataclass
class Job:
    """One generation request as the engine sees it. ``usage.output_tokens`` is updated live."""

    prompt_tokens: list[int]
    max_new_tokens: int
    limit_reason: str
    sampling: Sampling
    stop_sequences: list[str]
    tool_mode: ToolMode
    tools: list[CustomTool]
    forced_tool: str | None
    usage: Usage
    cancel: threading.Event = field(default_factory=threading.Event)
    cache: PromptCache | None = None
    cache_plan: CachePlan | None = None
    # GBNF of the answer text (structured outputs), and of each tool's input, by tool name.
    answer_grammar: str | None = None
    tool_grammars: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sample:
    """Make the sequence's context exactly ``tokens``, then sample one token under ``grammar``."""

    tokens: list[int]
    grammar: str | None


@dataclass(frozen=True, slots=True)
class Prefill:
    """Make the sequence's context exactly ``tokens``; sample nothing."""

    tokens: list[int]


class _Next:
    """Feed the token sampled last and sample the next one, under the same sampler."""


NEXT = _Next()
Step = Sample | Prefill | _Next


class Sequence(Protocol):
    """What a program sees of its sequence in the batch (``batch.py``)."""

    token: int
    """The token the batch sampled last for this program."""

    def save(self) -> bytes:
        """The sequence's state (its KV cells), for the prompt cache."""
        ...

    def restore(self, prefix: list[int], state: bytes) -> None:
        """Make the context ``prefix`` from a saved state; ``RuntimeError`` when it cannot."""
        ...


class _Sampler:
    """Samples tokens for one phase and remembers why it stopped: ``eog``, ``limit`` or ``cancel``.

    Iterating yields text pieces and the :data:`Step`\\ s to pass on to the batch."""

    def __init__(
        self, engine: Engine, job: Job, seq: Sequence, tokens: list[int], grammar: str | None
    ) -> None:
        self._engine, self._job, self._seq = engine, job, seq
        self._tokens, self._grammar = tokens, grammar
        self.end = "eog"

    def __iter__(self) -> Iterator[str | Step]:
        job, engine = self._job, self._engine
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if job.usage.output_tokens >= job.max_new_tokens:
            self.end = "limit"
            return
        if job.cancel.is_set():
            self.end = "cancel"
            return
        step: Step = Sample(self._tokens, self._grammar)
        while True:
            yield step
            token = self._seq.token
            job.usage.output_tokens += 1
            if job.cancel.is_set():
                self.end = "cancel"
                return
            if engine.is_eog(token):
                tail = decoder.decode(b"", final=True)
                if tail:
                    yield tail
                self.end = "eog"
                return
            text = decoder.decode(engine.piece(token))
            if text:
                yield text
            if job.usage.output_tokens >= job.max_new_tokens:
                tail = decoder.decode(b"", final=True)
                if tail:
                    yield tail
                self.end = "limit"
                return
            step = NEXT


class Engine:
    """The model's vocabulary side in the runner, and each request's program (:meth:`run`)."""

    def __init__(self, model: LlamaModel) -> None:
        self.model = model
        self._vocab = model.vocab
        self._pieces: dict[int, bytes] = {}

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``, special tokens (the chat template's markers) included."""
        return list(self.model.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int) -> bytes:
        """The bytes of one generated token (special tokens render as nothing)."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.model.detokenize([token])
        return piece

    def run(self, job: Job, seq: Sequence) -> Generator[Chunk | Step]:
        if job.cache is not None and job.cache_plan is not None:
            yield from self._apply_cache(job, seq, job.cache, job.cache_plan)
        emitted = ""
        if job.tool_mode != "forced":
            # Answers never show the prompt's scaffolding: echoed tool responses (and stray closing
            # tool-call tags) are dropped, and an echo of the tool instructions (or, with tool_choice
            # none, a tool call) ends the answer.
            echoes = [*SCAFFOLD_ECHOES, *([TOOL_CALL_OPEN] if job.tool_mode == "none" else [])]
            markers = [TOOL_CALL_OPEN] if job.tool_mode == "auto" else []
            matcher = StopMatcher(job.stop_sequences + markers + echoes)
            spans = SpanFilter(*TOOL_RESPONSE_SPAN, strays=(TOOL_CALL_CLOSE,))
            grammar = job.answer_grammar
            sampler = _Sampler(self, job, seq, job.prompt_tokens, grammar)
            hit: str | None = None
            for piece in sampler:
                if not isinstance(piece, str):
                    yield piece
                    continue
                safe, hit = matcher.feed(spans.feed(piece) if grammar is None else piece)
                if not emitted:
                    safe = safe.lstrip()
                if safe:
                    emitted += safe
                    yield ("text", safe)
                if hit is not None:
                    break
            if hit is None:
                if sampler.end == "cancel":
                    return
                rest = matcher.feed(spans.flush())[0] + matcher.flush()
                if not emitted:
                    rest = rest.lstrip()
                if not emitted and not rest and spans.dropped:
                    # A small model sometimes only repeats the tool's response: that content (not
                    # its tags) is then the answer, rather than an empty one.
                    rest = spans.dropped[-1].strip()
                if rest:
                    yield ("text", rest)
                yield ("end", "end_turn" if sampler.end == "eog" else job.limit_reason, None)
                return
            if hit in echoes:
                if not emitted and spans.dropped and spans.dropped[-1].strip():
                    yield ("text", spans.dropped[-1].strip())
                yield ("end", "end_turn", None)
                return
            if hit != TOOL_CALL_OPEN:
                yield ("end", "stop_sequence", hit)
                return
        yield from self._tool_call(job, seq, emitted)

    def _tool_call(self, job: Job, seq: Sequence, emitted: str) -> Iterator[Chunk | Step]:
        prefix = emitted + TOOL_CALL_OPEN + '{"name": '
        name = job.forced_tool
        if name is None and len(job.tools) == 1:
            name = job.tools[0].name
        if name is None:
            names = [t.name for t in job.tools]
            rule = " | ".join(json.dumps(json.dumps(n)) for n in names)
            sampler = _Sampler(self, job, seq, job.prompt_tokens + self.tokenize(prefix), f"root ::= {rule}")
            chosen = ""
            for piece in sampler:
                if isinstance(piece, str):
                    chosen += piece
                else:
                    yield piece
            if sampler.end != "eog":
                if sampler.end == "limit":
                    yield ("end", job.limit_reason, None)
                return
            name = json.loads(chosen)
        prefix += json.dumps(name) + ', "arguments": '
        tool = next(t for t in job.tools if t.name == name)
        yield ("tool", new_id("toolu"), tool.name)
        grammar = job.tool_grammars[tool.name]
        sampler = _Sampler(self, job, seq, job.prompt_tokens + self.tokenize(prefix), grammar)
        for piece in sampler:
            yield ("json", piece) if isinstance(piece, str) else piece
        if sampler.end == "cancel":
            return
        yield ("end", "tool_use" if sampler.end == "eog" else job.limit_reason, None)

    def _apply_cache(self, job: Job, seq: Sequence, cache: PromptCache, plan: CachePlan) -> Iterator[Step]:
        """Restore the planned prefix state, then evaluate and save each planned breakpoint prefix.

        Sampling afterwards reuses the evaluated prefix (the batch keeps the longest common prefix of
        the sequence's context), so the prompt is evaluated once in total.
        """
        tokens = job.prompt_tokens
        entry = plan.restore
        if entry is not None:
            try:
                seq.restore(tokens[: entry.n_tokens], entry.state)
            except RuntimeError:
                log.warning("a cached prompt state could not be restored; evaluating the prompt instead")
            finally:
                cache.release(plan)
        for write in plan.writes:
            if job.cancel.is_set():
                return
            yield Prefill(tokens[: write.n_tokens])
            cache.put(write, seq.save())
