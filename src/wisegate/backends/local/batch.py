"""Continuous batching: the requests the model runner generates for, decoded together.

One llama.cpp context holds ``slots`` sequences (``n_seq_max``), each with a whole ``n_ctx`` of KV
cells of its own (``kv_unified`` off: a sequence's attention never reads another's cells, so a
request's tokens do not depend on what else is in the batch). Each :meth:`Batch.step`

1. gives every sequence that is decoding its one new token and fills what room is left of the
   ``n_batch`` tokens with the prompts of sequences that are still reading theirs, oldest first (a
   long prompt is read over several steps, while the others keep generating);
2. runs one ``llama_decode`` over all of them;
3. samples, for each sequence whose step is answered, with that sequence's own sampler chain
   (its temperature, ``top_p``, ``top_k`` or greedy, and grammar), and resumes its program
   (``engine.py``), which turns the token into chunks and says what it wants next.

A request joins at the next step after a slot frees (:meth:`Batch.start`); one that ends or is
cancelled leaves at once. A slot's KV cells are its own, so they keep what the last request there
read until the next one comes: a new request takes the free slot whose cells share the longest
prefix with its prompt and reads only the rest (a conversation's next turn, the same system prompt
and tools), as the serial engine reused its one context. Which request gets a free slot is the
runner's decision (``runner.py``).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import llama_cpp
from llama_cpp._internals import LlamaModel

from wisegate.backends.local.engine import NEXT, Chunk, Engine, Job, Prefill, Sample, Step

log = logging.getLogger("wisegate.runner")

N_BATCH = 512
"""Tokens per decode: a prompt longer than what is left of it is read over several steps."""


@dataclass(eq=False)
class _Slot:
    """One sequence of the context (``seq_id``) and the request it holds, if any."""

    seq_id: int
    batch: Batch
    job_id: int = -1
    job: Job | None = None
    program: Generator[Chunk | Step] | None = None
    context: list[int] = field(default_factory=list)
    """The tokens in this sequence's KV cells, in order (positions 0…)."""
    pending: list[int] = field(default_factory=list)
    """Tokens to feed before the step is answered."""
    sampler: int | None = None  # llama_sampler_p (an address), None for a prefill
    token: int = -1

    def save(self) -> bytes:
        ctx = self.batch.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, self.seq_id)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, self.seq_id)
        return bytes(buffer)[:written]

    def restore(self, prefix: list[int], state: bytes) -> None:
        self.clear()
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(self.batch.ctx, buffer, len(state), self.seq_id) != len(state):
            self.clear()
            raise RuntimeError("could not restore a cached prompt state")
        self.context = list(prefix)

    def clear(self) -> None:
        llama_cpp.llama_memory_seq_rm(self.batch.memory, self.seq_id, -1, -1)
        self.context = []

    def trim(self, tokens: list[int], *, keep_last: bool) -> None:
        """Keep the longest common prefix of the context and ``tokens``; the rest of ``tokens`` is
        pending. ``keep_last``: at least the last token is fed again (its logits are needed)."""
        common = _common(self.context, tokens)
        if keep_last and common == len(tokens):
            common -= 1
        if common < len(self.context):
            llama_cpp.llama_memory_seq_rm(self.batch.memory, self.seq_id, common, -1)
            del self.context[common:]
        self.pending = tokens[common:]

    def free_sampler(self) -> None:
        if self.sampler is not None:
            llama_cpp.llama_sampler_free(self.sampler)
            self.sampler = None


class Batch:
    """The context, its ``slots`` sequences and the decode loop. One thread only (the runner's
    generation thread); ``emit(job_id, job, chunk)`` and ``ended(job_id, job, failure)`` report
    back to the runner."""

    def __init__(
        self,
        model: LlamaModel,
        *,
        n_ctx: int,
        slots: int,
        threads: int,
        emit: Callable[[int, Job, Chunk], None],
        ended: Callable[[int, Job, str | None], None],
    ) -> None:
        self.engine = Engine(model)
        self._model = model
        self._emit, self._ended = emit, ended
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * slots  # each sequence gets n_ctx cells (kv_unified off)
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = slots
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as llama-cpp-python's Llama
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not create a context of {slots} × {n_ctx} tokens")
        self.ctx = ctx
        self.memory = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self.slots = slots
        self._slots = [_Slot(seq_id, self) for seq_id in range(slots)]
        self._running: list[_Slot] = []  # in the order they joined

    @property
    def free(self) -> int:
        """Slots a request may join now."""
        return len(self._slots) - len(self._running)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def start(self, job_id: int, job: Job) -> None:
        """Give ``job`` the free slot holding the longest prefix of its prompt; it joins the next
        :meth:`step`."""
        slot = max(
            (s for s in self._slots if s.job is None), key=lambda s: _common(s.context, job.prompt_tokens)
        )
        slot.job_id, slot.job = job_id, job
        slot.program = self.engine.run(job, slot)
        self._running.append(slot)
        self._advance(slot)

    def step(self) -> None:
        """One decode over every running sequence (see the module docstring)."""
        for slot in list(self._running):
            assert slot.job is not None
            if slot.job.cancel.is_set():
                self._leave(slot, None)
        if not self._running:
            return
        batch, n = self._batch, 0
        answered: list[tuple[_Slot, int]] = []  # slots whose step this decode answers, batch index
        fed: list[tuple[_Slot, list[int]]] = []
        # Decoding sequences first (one token each), then prompts, oldest first, as room allows.
        for slot in sorted(self._running, key=lambda s: len(s.pending) > 1):
            room = N_BATCH - n
            if room <= 0:
                break
            tokens = slot.pending[:room]
            position = len(slot.context)
            for i, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = position + i
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.seq_id
                batch.logits[n] = False
                n += 1
            if len(tokens) == len(slot.pending) and slot.sampler is not None:
                batch.logits[n - 1] = True
                answered.append((slot, n - 1))
            elif len(tokens) == len(slot.pending):
                answered.append((slot, -1))
            fed.append((slot, tokens))
        batch.n_tokens = n
        code = llama_cpp.llama_decode(self.ctx, batch)
        if code != 0:
            log.error("llama_decode returned %d for a batch of %d tokens", code, n)
            for slot, _ in fed:
                slot.clear()
                self._leave(slot, f"RuntimeError: llama_decode returned {code}")
            return
        for slot, tokens in fed:
            slot.context.extend(tokens)
            del slot.pending[: len(tokens)]
        for slot, index in answered:
            if slot.sampler is not None:
                slot.token = llama_cpp.llama_sampler_sample(slot.sampler, self.ctx, index)
            self._advance(slot)

    def _advance(self, slot: _Slot) -> None:
        """Resume the slot's program until it asks for a step (or ends)."""
        assert slot.program is not None and slot.job is not None
        try:
            while True:
                item = next(slot.program)
                if isinstance(item, tuple):
                    self._emit(slot.job_id, slot.job, item)
                elif item is NEXT:
                    slot.pending = [slot.token]
                    return
                elif isinstance(item, Sample):
                    slot.trim(item.tokens, keep_last=True)
                    slot.free_sampler()
                    slot.sampler = self._sampler(slot.job, item.grammar)
                    return
                elif isinstance(item, Prefill):
                    slot.trim(item.tokens, keep_last=False)
                    slot.free_sampler()
                    if slot.pending:
                        return
        except StopIteration:
            self._leave(slot, None)
        except Exception as exc:
            log.exception("generation failed")
            self._leave(slot, f"{type(exc).__name__}: {exc}")

    def _sampler(self, job: Job, grammar: str | None) -> int:
        """A sampler chain as llama-cpp-python's ``Llama.generate`` builds it for our settings
        (no penalties, ``min_p`` 0): grammar, then greedy at temperature 0, else top-k, top-p,
        temperature and a random draw."""
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if grammar is not None:
            rule = llama_cpp.llama_sampler_init_grammar(self._model.vocab, grammar.encode("utf-8"), b"root")
            if not rule:
                llama_cpp.llama_sampler_free(chain)
                raise RuntimeError("llama.cpp refused a grammar")
            llama_cpp.llama_sampler_chain_add(chain, rule)
        s = job.sampling
        if s.temperature == 0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(s.top_k))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(s.temperature))
            llama_cpp.llama_sampler_chain_add(
                chain, llama_cpp.llama_sampler_init_dist(llama_cpp.LLAMA_DEFAULT_SEED)
            )
        address: int = chain
        return address

    def _leave(self, slot: _Slot, failure: str | None) -> None:
        """End the slot's request (reported through ``ended``) and free the slot; its KV cells keep
        what was read (see the module docstring), unless the request failed."""
        job, job_id = slot.job, slot.job_id
        assert job is not None
        if slot.program is not None:
            slot.program.close()
        slot.free_sampler()
        if failure is not None:
            slot.clear()
        slot.job, slot.program, slot.pending, slot.job_id = None, None, [], -1
        self._running.remove(slot)
        self._ended(job_id, job, failure)


def _common(a: list[int], b: list[int]) -> int:
    """The length of the longest common prefix of ``a`` and ``b``."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
