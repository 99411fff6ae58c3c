"""The model's vocabulary, loaded without its weights, for the API process.

Tokenizing (admission counts a prompt exactly, ``count_tokens`` answers without the model), mapping
tokens back to prompt bytes (prompt-cache boundaries) and letting llama.cpp parse a grammar with this
vocabulary (``grammar.py``'s last bound) all happen before a request is sent to the model runner, so
they need the vocabulary only: a few MB, loaded in milliseconds, in every API worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaModel


class Vocabulary:
    def __init__(self, model_path: Path) -> None:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
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
        """Whether llama.cpp's own parser accepts ``grammar`` (built with this model's vocabulary)."""
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True
