"""The workbench over HTTP: a multi-turn conversation with parameters, tools and a prefill reaches the
backend as one Messages request; the answer's cost; count_tokens; Get code whose Python and curl
snippets run against the server; saved prompts per person; no prompt text in the audit record."""

from __future__ import annotations

import html
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL, LiveServer, scripted_settings, serve
from tests.console.support import csrf_of, join, login
from wisegate.backends.scripted import ScriptedBackend


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path_factory.mktemp("workbench"))
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


@pytest.fixture(scope="module")
def console(server: LiveServer) -> Iterator[httpx.Client]:
    with closing(login(server)) as client:
        yield client


TURNS = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Paris"}}],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"}]},
]
TOOLS = [
    {
        "name": "weather",
        "description": "Weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


def _form(console: httpx.Client, **values: str) -> dict[str, str]:
    return {
        "csrf_token": csrf_of(console.get("/console/playground").text),
        "back": "/console/playground",
        "model": SCRIPTED_MODEL,
        "max_tokens": "40",
        "turns": json.dumps(TURNS),
        "tools": json.dumps(TOOLS),
        **values,
    }


def _events(console: httpx.Client, form: dict[str, str]) -> list[dict[str, Any]]:
    with console.stream(
        "POST", "/console/playground", data=form, headers={"accept": "text/event-stream"}
    ) as r:
        assert r.status_code == 200
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]


def test_a_conversation_with_parameters_and_tools_is_one_request(
    server: LiveServer, console: httpx.Client
) -> None:
    form = _form(
        console,
        system="answer in one line",
        temperature="0.3",
        top_p="0.9",
        top_k="7",
        stop_sequences="END\nSTOP",
        message="and tomorrow?",
    )
    events = _events(console, form)
    assert [e["type"] for e in events][-2:] == ["wisegate_cost", "message_stop"]
    assert events[-2]["cost_usd"].startswith("$")
    sent = server.backend.calls[-1]
    assert [m.role for m in sent.messages] == ["user", "assistant", "user", "user"]
    assert sent.messages[-1].content == "and tomorrow?"
    assert sent.system == "answer in one line" and sent.temperature == 0.3 and sent.top_p == 0.9
    assert sent.top_k == 7 and sent.stop_sequences == ["END", "STOP"] and sent.max_tokens == 40
    assert [t.name for t in sent.tools or []] == ["weather"]

    # an assistant turn last, no new message: a prefill
    prefill = [*TURNS, {"role": "user", "content": "Say it"}, {"role": "assistant", "content": "It is"}]
    _events(console, _form(console, turns=json.dumps(prefill)))
    assert server.backend.calls[-1].messages[-1].role == "assistant"

    bad = console.post(
        "/console/playground",
        data=_form(console, turns="[not json"),
        headers={"accept": "text/event-stream"},
    )
    assert "Conversation: not valid JSON" in bad.text
    unknown = _events(console, _form(console, message="x", temperature="hot"))
    assert unknown[-1]["type"] == "error" and "temperature" in unknown[-1]["error"]["message"]


def test_count_tokens_and_get_code(
    server: LiveServer, console: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = console.post("/console/playground/count_tokens", data=_form(console, message="two words"))
    assert counted.status_code == 200
    backend = server.backend
    expected = sum(len(t["content"].split()) for t in TURNS if isinstance(t["content"], str)) + 2
    assert counted.json() == {"input_tokens": expected}
    refused = console.post(
        "/console/playground/count_tokens", data=_form(console, model="no-such-model", message="x")
    )
    assert refused.status_code == 404 and refused.json()["error"]["type"] == "not_found_error"

    form = _form(console, message="say hello", temperature="0.5", stop_sequences="it's done")
    code = console.post("/console/playground/code", data=form)
    assert code.status_code == 200
    snippets = code.json()
    assert set(snippets) == {"curl", "python", "typescript"}
    assert (
        f'"model": "{SCRIPTED_MODEL}"' in snippets["typescript"]
        and "new Anthropic(" in snippets["typescript"]
    )
    assert "stream" not in snippets["python"]

    monkeypatch.setenv("ANTHROPIC_API_KEY", server.key)
    printed: list[Any] = []
    calls = len(backend.calls)
    exec(compile(snippets["python"], "snippet.py", "exec"), {"print": printed.append, "__name__": "snippet"})
    assert len(backend.calls) == calls + 1 and backend.calls[-1].messages[-1].content == "say hello"
    assert backend.calls[-1].stop_sequences == ["it's done"]
    assert printed and printed[0][0].text == "say hello"

    done = subprocess.run(
        ["bash", "-c", snippets["curl"]],
        env={**os.environ, "ANTHROPIC_API_KEY": server.key},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["type"] == "message" and reply["content"][0]["text"] == "say hello"
    assert backend.calls[-1].stop_sequences == ["it's done"]  # the quote survived the shell

    broken = console.post("/console/playground/code", data=_form(console, tools="{"))
    assert broken.status_code == 400 and "Tools: not valid JSON" in broken.json()["error"]["message"]


def test_saved_prompts_belong_to_their_owner(server: LiveServer, console: httpx.Client) -> None:
    form = _form(console, system="a saved system prompt", message="draft", prompt_name="Weather")
    saved = console.post("/console/playground/prompts", data=form)
    assert saved.status_code == 303 and "/console/playground?prompt=prompt_" in saved.headers["location"]
    prompt_id = saved.headers["location"].split("prompt=")[1]
    loaded = console.get(f"/console/playground?prompt={prompt_id}").text
    assert "a saved system prompt</textarea>" in loaded and "draft</textarea>" in loaded
    assert "What is the weather in Paris?" in loaded and f'data-prompt-id="{prompt_id}"' in loaded
    again = console.post("/console/playground/prompts", data={**form, "system": "changed"})
    assert again.headers["location"].endswith(prompt_id)  # the same name is overwritten
    assert console.get("/console/playground").text.count("data-prompt-id=") == 1
    nameless = console.post("/console/playground/prompts", data={**form, "prompt_name": ""})
    assert nameless.status_code == 303 and nameless.headers["location"] == "/console/playground"

    with closing(join(server, "other@example.com", "developer")) as other:
        assert prompt_id not in other.get("/console/playground").text
        assert other.get(f"/console/playground?prompt={prompt_id}").status_code == 404
        token = csrf_of(other.get("/console/playground").text)
        refused = other.post(f"/console/playground/prompts/{prompt_id}/delete", data={"csrf_token": token})
        assert refused.status_code == 303
    assert f'data-prompt-id="{prompt_id}"' in console.get("/console/playground").text

    token = csrf_of(console.get("/console/playground").text)
    deleted = console.post(f"/console/playground/prompts/{prompt_id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 303
    assert "data-prompt-id=" not in console.get("/console/playground").text

    events = server.run(server.services.accounts.audit_log(server.services.organization_id or ""))
    recorded = json.dumps([e.detail for e in events])
    assert "Paris" not in recorded and "a saved system prompt" not in recorded and "draft" not in recorded
    assert any(e.action == "console.save_prompt" for e in events)


def test_deeply_nested_turns_or_tools_are_a_400(console: httpx.Client) -> None:
    deep = "[" * 5000 + "]" * 5000
    for field in ("turns", "tools"):
        answer = console.post("/console/playground/count_tokens", data=_form(console, **{field: deep}))
        assert answer.status_code == 400, (field, answer.text)
        assert "deeper than 128" in answer.json()["error"]["message"]


def test_nan_infinity_and_loose_numbers_are_a_400(console: httpx.Client) -> None:
    """The form's JSON is JSON (no ``NaN``/``Infinity``) and its numbers plain ASCII, as over the API."""
    tools = json.dumps(TOOLS).replace('"Weather of a city"', "NaN")
    answer = console.post("/console/playground/count_tokens", data=_form(console, tools=tools))
    assert answer.status_code == 400, answer.text
    assert "NaN and Infinity are not JSON numbers" in answer.json()["error"]["message"]
    for field, value in (
        ("temperature", "nan"),
        ("temperature", "inf"),
        ("top_k", "١٢"),
        ("max_tokens", "4_0"),
    ):
        answer = console.post("/console/playground/count_tokens", data=_form(console, **{field: value}))
        assert answer.status_code == 400, (field, value, answer.text)
        assert answer.json()["error"]["message"] == f"{field}: '{value}' is not a number"


def test_a_hostile_form_is_a_400_page_not_a_500(console: httpx.Client) -> None:
    """The form re-rendered with its error shows the turns it was given: turns nested 100,000 deep or
    numbers of 5,000 digits are a 400 saying so, never a RecursionError or int()'s ValueError."""
    deep = "[" * 100_000 + "]" * 100_000
    for values, expected in (
        ({"turns": deep}, "deeper than 128"),
        ({"max_tokens": "9" * 5000}, "max_tokens: '"),
        ({"top_k": "1" * 40}, "top_k: '"),
        ({"tools": '[{"n": ' + "9" * 5000 + "}]"}, "an integer of 5000 digits"),
    ):
        for path in ("/console/playground", "/console/playground/count_tokens"):
            answer = console.post(path, data=_form(console, **values))
            assert answer.status_code == 400, (path, list(values), answer.status_code, answer.text[:300])
            assert expected in html.unescape(answer.text), (path, list(values), answer.text[:500])
            assert "set_int_max_str_digits" not in answer.text
