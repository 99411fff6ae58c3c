"""The model's vocabulary, loaded without its weights, for the API process.

Tokenizing (admission counts a prompt exactly, ``count_tokens`` answers without the model), mapping
tokens back to prompt bytes (prompt-cache boundaries) and letting llama.cpp parse a grammar with this
vocabulary (``grammar.py``'s last bound) all happen before a request is sent to the model runner, so
they need the vocabulary only: a few MB, loaded in milliseconds, in every API worker.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaModel

from wisegate.backends.local.params import model_params


class Vocabulary:
    def __init__(self, model_path: Path) -> None:
        params = model_params(repack=False, vocab_only=True)
        self._model = LlamaModel(path_model=str(model_path), params=params, verbose=False)
        self._vocab = self._model.vocab
        self.metadata = self._model.metadata()
        self._token_sizes: dict[int, int] = {}

    def close(self) -> None:
        self._model.close()  # type: ignore[no-untyped-call]

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``, special tokens (the chat template's markers) included."""
        return list(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def token_ends(self, tokens: Sequence[int]) -> list[int]:
        """The UTF-8 byte offset at which each token ends when the tokens are detokenised in order."""
        ends: list[int] = []
        total = 0
        for token in tokens:
            size = self._token_sizes.get(token)
            if size is None:
                size = self._token_sizes[token] = len(self._model.detokenize([token], special=True))
            total += size
            ends.append(total)
        return ends

    def parses(self, grammar: str) -> bool:
        """Whether llama.cpp's own parser accepts ``grammar`` (built with this model's vocabulary).

        A grammar it refuses is printed, whole, to stderr by llama.cpp: it holds the request's schema,
        so what native code writes meanwhile is withheld (the caller logs the refusal instead)."""
        with _WithheldStderr() as stderr:
            sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
            if not sampler:
                stderr.discard()
                return False
        llama_cpp.llama_sampler_free(sampler)
        return True


class _WithheldStderr:
    """What is written to stderr during a block — by native code to file descriptor 2, or by
    llama-cpp-python's log callback to ``sys.stderr`` — held back, and passed on after the block
    unless :meth:`discard` was called. One block at a time per process: both are the process's, so
    another thread's writes in the block are held (and passed on) too."""

    _lock = threading.Lock()

    def __enter__(self) -> _WithheldStderr:
        self._lock.acquire()
        self._pass_on = True
        self._held = tempfile.TemporaryFile()
        self._stderr = sys.stderr
        self._stderr.flush()
        self._saved = os.dup(2)
        os.dup2(self._held.fileno(), 2)
        sys.stderr = self._text = io.StringIO()
        return self

    def discard(self) -> None:
        self._pass_on = False

    def __exit__(self, *exc: object) -> None:
        try:
            sys.stderr = self._stderr
            os.dup2(self._saved, 2)
            os.close(self._saved)
            if self._pass_on:
                self._held.seek(0)
                if data := self._held.read():
                    os.write(2, data)
                if text := self._text.getvalue():
                    self._stderr.write(text)
            self._held.close()
        finally:
            self._lock.release()
