"""The console's workbench: a Messages request assembled from a form (a conversation of turns, system
prompt, sampling parameters, stop sequences, tools), the same request as code to copy (curl, the Python
SDK, the TypeScript SDK), and the prompts each person saves.

The request it builds is sent through ``MessageService`` like any other (billed and limited), so this
module only shapes it; validation is ``MessagesRequest``'s.
"""

from __future__ import annotations

import json
import pprint
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from wisegate.domain.storable import storable_name
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.bounds import echo
from wisegate.protocol.json_depth import parse_json
from wisegate.protocol.messages import CountTokensRequest, MessagesRequest, new_id
from wisegate.protocol.surrogates import problem, surrogate_path
from wisegate.records.workbench import SavedPrompt
from wisegate.storage.prompts import PromptRepo

FIELDS = (
    "model",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "turns",
    "message",
)
MAX_STATE = 512 * 1024
SAMPLING = ("temperature", "top_p", "top_k")
TS_PARAMS = "Anthropic.MessageCreateParamsNonStreaming"


def _json(text: str, label: str) -> Any:
    try:
        value = parse_json(text)
    except ValueError as exc:  # TooDeep, NotFinite, TooLong, NotJSON: messages made to be shown
        raise InvalidRequest(f"{label}: {exc}") from None
    if (lone := surrogate_path(value)) is not None:
        raise InvalidRequest(f"{label}: {problem(lone[1], 'it')}")
    return value


_MAX_NUMBER_CHARS = 32  # more is no sampling parameter nor token count (and int() refuses 4301 digits)
_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _number(state: Mapping[str, str], name: str, kind: type[int] | type[float]) -> int | float | None:
    raw = (state.get(name) or "").strip()
    if not raw:
        return None
    # int() and float() also take "1_0", "nan", "inf" and other scripts' digits ("٣").
    if len(raw) > _MAX_NUMBER_CHARS or not (_INTEGER if kind is int else _DECIMAL).fullmatch(raw):
        raise InvalidRequest(f"{name}: '{echo(raw)}' is not a number")
    return kind(raw)


def request_body(state: Mapping[str, str]) -> dict[str, Any]:
    """The Messages request of a workbench form: ``turns`` (JSON ``[{role, content}]``, content a string
    or content blocks) then ``message`` as a new user turn when given; a last assistant turn is a
    prefill. Empty fields are left out."""
    turns = _json(state.get("turns") or "[]", "Conversation")
    if not isinstance(turns, list):
        raise InvalidRequest("Conversation: a list of turns")
    messages = [{"role": t.get("role"), "content": t.get("content")} for t in turns if isinstance(t, dict)]
    message = (state.get("message") or "").strip()
    if message:
        messages.append({"role": "user", "content": message})
    if not messages:
        raise InvalidRequest("Message: write a message (or add a turn) first")
    body: dict[str, Any] = {
        "model": (state.get("model") or "").strip(),
        "max_tokens": _number(state, "max_tokens", int) or 256,
        "messages": messages,
    }
    system = (state.get("system") or "").strip()
    if system:
        body["system"] = system
    for name, kind in (("temperature", float), ("top_p", float), ("top_k", int)):
        value = _number(state, name, kind)
        if value is not None:
            body[name] = value
    stops = [s for s in (state.get("stop_sequences") or "").splitlines() if s.strip()]
    if stops:
        body["stop_sequences"] = stops
    tools_text = (state.get("tools") or "").strip()
    if tools_text:
        tools = _json(tools_text, "Tools")
        if not isinstance(tools, list):
            raise InvalidRequest("Tools: a JSON list of tool definitions")
        if tools:
            body["tools"] = tools
    return body


def _validated(model: type[MessagesRequest] | type[CountTokensRequest], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{where}: {first['msg']}") from None


def messages_request(state: Mapping[str, str], *, stream: bool) -> MessagesRequest:
    request: MessagesRequest = _validated(MessagesRequest, {**request_body(state), "stream": stream})
    return request


def count_request(state: Mapping[str, str]) -> CountTokensRequest:
    body = request_body(state)
    body.pop("max_tokens", None)
    body.pop("temperature", None)
    body.pop("top_p", None)
    body.pop("top_k", None)
    body.pop("stop_sequences", None)
    request: CountTokensRequest = _validated(CountTokensRequest, body)
    return request


def snippets(body: Mapping[str, Any], base_url: str) -> dict[str, str]:
    """The request as ``curl``, Python SDK and TypeScript SDK code (the key read from the environment)."""
    payload = json.dumps(body, indent=2, ensure_ascii=False)
    shell = payload.replace("'", "'\\''")
    curl = (
        f"curl {base_url}/v1/messages \\\n"
        '  -H "x-api-key: $ANTHROPIC_API_KEY" \\\n'
        '  -H "anthropic-version: 2023-06-01" \\\n'
        '  -H "content-type: application/json" \\\n'
        f"  -d '{shell}'"
    )
    # The 2.10 SDKs dropped the sampling parameters from their signatures; the API still takes them.
    named = {k: v for k, v in body.items() if k not in SAMPLING}
    extra = {k: v for k, v in body.items() if k in SAMPLING}
    if extra:
        named["extra_body"] = extra
    arguments = ",\n".join(
        f"    {name}=" + pprint.pformat(value, indent=1, width=96, sort_dicts=False).replace("\n", "\n    ")
        for name, value in named.items()
    )
    python = (
        "import anthropic\n\n"
        f"client = anthropic.Anthropic(base_url={base_url!r})  # reads ANTHROPIC_API_KEY\n"
        f"message = client.messages.create(\n{arguments},\n)\n"
        "print(message.content)\n"
    )
    typescript = (
        'import Anthropic from "@anthropic-ai/sdk";\n\n'
        f"const client = new Anthropic({{ baseURL: {json.dumps(base_url)} }}); // reads ANTHROPIC_API_KEY\n"
        f"const message = await client.messages.create({payload} as {TS_PARAMS});\n"
        "console.log(message.content);\n"
    )
    return {"curl": curl, "python": python, "typescript": typescript}


@dataclass(frozen=True, slots=True)
class PromptOwner:
    organization_id: str
    owner_id: str


class WorkbenchService:
    """Saved prompts: each person sees, loads, overwrites and deletes only their own."""

    def __init__(self, prompts: PromptRepo) -> None:
        self._prompts = prompts

    async def prompts(self, owner: PromptOwner) -> list[SavedPrompt]:
        return [
            p
            for p in await self._prompts.of_owner(owner.owner_id)
            if p.organization_id == owner.organization_id
        ]

    async def prompt(self, owner: PromptOwner, prompt_id: str) -> SavedPrompt:
        found = await self._prompts.get(prompt_id)
        if (
            found is None
            or found.owner_id != owner.owner_id
            or found.organization_id != owner.organization_id
        ):
            raise NotFound(f"saved prompt {echo(prompt_id)} not found")
        return found

    async def save(self, owner: PromptOwner, name: str, state: Mapping[str, str]) -> SavedPrompt:
        """Save the form under ``name``; a prompt of the same name is overwritten."""
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidRequest("Name: 1 to 200 characters")
        storable_name("Name", name, 200)
        kept = {k: str(state.get(k) or "") for k in FIELDS}
        text = json.dumps(kept)
        if len(text) > MAX_STATE:
            raise InvalidRequest(f"The prompt is too large to save (at most {MAX_STATE // 1024} KiB)")
        now = datetime.now(UTC)
        same = next((p for p in await self.prompts(owner) if p.name == name), None)
        prompt = SavedPrompt(
            same.id if same else new_id("prompt"),
            owner.organization_id,
            owner.owner_id,
            name,
            text,
            same.created_at if same else now,
            now,
        )
        return await self._prompts.save(prompt)

    async def delete(self, owner: PromptOwner, prompt_id: str) -> None:
        await self.prompt(owner, prompt_id)
        await self._prompts.delete(prompt_id)


def state_of(prompt: SavedPrompt) -> dict[str, str]:
    loaded = json.loads(prompt.state)
    return {k: str(loaded.get(k) or "") for k in FIELDS}


def turns_of(state: Mapping[str, str]) -> list[dict[str, Any]]:
    """The conversation's turns for display (nothing when the field is not a JSON list of turns)."""
    try:
        turns = parse_json(state.get("turns") or "[]")
    except ValueError:  # deep, endless or broken: shown as no turns (sending it says why)
        return []
    return [t for t in turns if isinstance(t, dict)] if isinstance(turns, list) else []
