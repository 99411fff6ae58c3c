"""The model runner's side of the embedded model: sampling, detokenising, stop sequences and tool calls.

``Engine.run(job)`` is a plain generator executed on the runner's generation thread (``runner.py``). It
yields :data:`Chunk` tuples that the async side turns into protocol events:

    ("text", str)                      visible text
    ("tool", tool_use_id, name)        a tool call begins
    ("json", str)                      a piece of the tool input JSON
    ("end", stop_reason, stop_sequence)

Grammars come ready-made and verified in the job (``grammar.py`` builds and bounds them before
generation starts); the engine only samples under them.
"""

from __future__ import annotations

import codecs
import ctypes
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import llama_cpp
from llama_cpp import Llama
from llama_cpp.llama_grammar import LlamaGrammar

from wisegate.backends.local.cache import CachePlan, PromptCache
from wisegate.backends.local.prompt import SCAFFOLD_ECHOES, TOOL_CALL_OPEN, TOOL_RESPONSE_SPAN
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


class _Sampler:
    """Samples tokens for one phase and remembers why it stopped: ``eog``, ``limit`` or ``cancel``."""

    def __init__(self, engine: Engine, job: Job, tokens: list[int], grammar: LlamaGrammar | None) -> None:
        self._engine, self._job, self._tokens, self._grammar = engine, job, tokens, grammar
        self.end = "eog"

    def __iter__(self) -> Iterator[str]:
        job, llm = self._job, self._engine.llm
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if job.usage.output_tokens >= job.max_new_tokens:
            self.end = "limit"
            return
        if job.cancel.is_set():
            self.end = "cancel"
            return
        s = job.sampling
        for token in llm.generate(
            self._tokens,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=0.0,
            temp=s.temperature,
            repeat_penalty=1.0,
            grammar=self._grammar,
            reset=True,
        ):
            job.usage.output_tokens += 1
            if job.cancel.is_set():
                self.end = "cancel"
                return
            if self._engine.is_eog(token):
                tail = decoder.decode(b"", final=True)
                if tail:
                    yield tail
                self.end = "eog"
                return
            text = decoder.decode(llm.detokenize([token]))
            if text:
                yield text
            if job.usage.output_tokens >= job.max_new_tokens:
                tail = decoder.decode(b"", final=True)
                if tail:
                    yield tail
                self.end = "limit"
                return


class Engine:
    """Owns the ``Llama`` instance. ``run`` must only be called from one thread at a time."""

    def __init__(self, llm: Llama) -> None:
        self.llm = llm
        self._vocab = llm._model.vocab
        self._grammars: dict[str, LlamaGrammar] = {}
        self._grammar_lock = threading.Lock()
        self._grammar_capacity = 256

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``, special tokens (the chat template's markers) included."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def run(self, job: Job) -> Iterator[Chunk]:
        if job.cache is not None and job.cache_plan is not None:
            self._apply_cache(job.prompt_tokens, job.cache, job.cache_plan, job.cancel)
        emitted = ""
        if job.tool_mode != "forced":
            # Answers never show the prompt's scaffolding: echoed tool responses are dropped, and an
            # echo of the tool instructions (or, with tool_choice none, a tool call) ends the answer.
            echoes = [*SCAFFOLD_ECHOES, *([TOOL_CALL_OPEN] if job.tool_mode == "none" else [])]
            markers = [TOOL_CALL_OPEN] if job.tool_mode == "auto" else []
            matcher = StopMatcher(job.stop_sequences + markers + echoes)
            spans = SpanFilter(*TOOL_RESPONSE_SPAN)
            grammar = self._compiled(job.answer_grammar) if job.answer_grammar is not None else None
            sampler = _Sampler(self, job, job.prompt_tokens, grammar)
            hit: str | None = None
            for piece in sampler:
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
        yield from self._tool_call(job, emitted)

    def _tool_call(self, job: Job, emitted: str) -> Iterator[Chunk]:
        prefix = emitted + TOOL_CALL_OPEN + '{"name": '
        name = job.forced_tool
        if name is None and len(job.tools) == 1:
            name = job.tools[0].name
        if name is None:
            names = [t.name for t in job.tools]
            rule = " | ".join(json.dumps(json.dumps(n)) for n in names)
            sampler = _Sampler(
                self, job, job.prompt_tokens + self.tokenize(prefix), self._compiled(f"root ::= {rule}")
            )
            chosen = "".join(sampler)
            if sampler.end != "eog":
                if sampler.end == "limit":
                    yield ("end", job.limit_reason, None)
                return
            name = json.loads(chosen)
        prefix += json.dumps(name) + ', "arguments": '
        tool = next(t for t in job.tools if t.name == name)
        yield ("tool", new_id("toolu"), tool.name)
        grammar = self._compiled(job.tool_grammars[tool.name])
        sampler = _Sampler(self, job, job.prompt_tokens + self.tokenize(prefix), grammar)
        for piece in sampler:
            yield ("json", piece)
        if sampler.end == "cancel":
            return
        yield ("end", "tool_use" if sampler.end == "eog" else job.limit_reason, None)

    def _apply_cache(
        self, tokens: list[int], cache: PromptCache, plan: CachePlan, cancel: threading.Event
    ) -> None:
        """Restore the planned prefix state, then evaluate and save each planned breakpoint prefix.

        Generation afterwards reuses the evaluated prefix (``Llama.generate`` keeps the longest
        common prefix), so the prompt is evaluated once in total.
        """
        llm = self.llm
        entry = plan.restore
        if entry is not None:
            try:
                self._load(tokens[: entry.n_tokens], entry.state)
            except RuntimeError:
                log.warning("a cached prompt state could not be restored; evaluating the prompt instead")
                llm.n_tokens = 0
            finally:
                cache.release(plan)
        for write in plan.writes:
            if cancel.is_set():
                return
            common = 0
            for a, b in zip(llm.input_ids[: llm.n_tokens], tokens[: write.n_tokens], strict=False):
                if a != b:
                    break
                common += 1
            llm.n_tokens = common
            llm.eval(tokens[common : write.n_tokens])
            llm._ctx.kv_cache_seq_rm(0, write.n_tokens, -1)
            cache.put(write, self._save())

    def _save(self) -> bytes:
        ctx = self.llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        return bytes(buffer)[:written]

    def _load(self, prefix: list[int], state: bytes) -> None:
        llm = self.llm
        llm._ctx.kv_cache_seq_rm(0, 0, -1)
        llm.n_tokens = 0
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(state), 0) != len(state):
            llm._ctx.kv_cache_seq_rm(0, 0, -1)
            raise RuntimeError("could not restore a cached prompt state")
        llm.input_ids[: len(prefix)] = prefix
        llm.n_tokens = len(prefix)
        llm._requires_eval = True

    def _compiled(self, text: str) -> LlamaGrammar:
        with self._grammar_lock:
            grammar = self._grammars.get(text)
            if grammar is None:
                grammar = self._grammars[text] = LlamaGrammar.from_string(text, verbose=False)
                while len(self._grammars) > self._grammar_capacity:
                    self._grammars.pop(next(iter(self._grammars)))
            return grammar
