"""Structured outputs and grammar bounds on the embedded model, through the official SDKs and raw HTTP.

The server runs in the test process: a schema that crashed llama.cpp would take the tests down with
it, so "answered 400, then answered the next request" is the survival check.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Literal

import anthropic
import httpx
import openai
import pydantic
import pytest

from tests.api.test_messages_embedded import sse_events
from tests.conftest import EMBEDDED_MODEL, SCRIPTED_MODEL, LiveServer

GREEDY = {"temperature": 0}
BIG_ARRAY = {
    "type": "object",
    "properties": {"a": {"type": "array", "items": {"type": "integer"}, "maxItems": 20000}},
    "required": ["a"],
}
LONG_STRING = {
    "type": "object",
    "properties": {"a": {"type": "string", "maxLength": 30000}},
    "required": ["a"],
}


class City(pydantic.BaseModel):
    name: str
    country: Literal["Italy", "France", "Spain"]
    population_millions: int


def headers(server: LiveServer) -> dict[str, str]:
    return {"x-api-key": server.key, "anthropic-version": "2023-06-01"}


def embedded(content: str, max_tokens: int, **fields: Any) -> dict[str, Any]:
    """A Messages request for the embedded model with one user turn, plus ``fields``."""
    return {
        "model": EMBEDDED_MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}],
        **fields,
    }


def openai_client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.key, max_retries=0)


def still_answers(server: LiveServer) -> None:
    models = httpx.get(f"{server.base_url}/v1/models", headers=headers(server))
    assert models.status_code == 200


def test_messages_parse_returns_schema_valid_json(embedded_server: LiveServer) -> None:
    message = embedded_server.client().messages.parse(
        **embedded("Describe Rome as JSON.", 60), output_format=City, extra_body=GREEDY
    )
    assert message.stop_reason == "end_turn"
    city = message.parsed_output
    assert isinstance(city, City)
    text = message.content[0].text  # type: ignore[union-attr]
    assert text == text.strip() and City.model_validate_json(text) == city


def test_streamed_structured_output_is_text_deltas_of_one_json_value(embedded_server: LiveServer) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
        "additionalProperties": False,
    }
    response = httpx.post(
        f"{embedded_server.base_url}/v1/messages",
        headers=headers(embedded_server),
        json=embedded(
            "Is the sky blue?",
            40,
            stream=True,
            output_config={"format": {"type": "json_schema", "schema": schema}},
            **GREEDY,
        ),
        timeout=60,
    )
    events = sse_events(response)
    deltas = [d["delta"] for name, d in events if name == "content_block_delta"]
    assert deltas and all(d["type"] == "text_delta" for d in deltas)
    text = "".join(d["text"] for d in deltas)
    value = json.loads(text)
    assert value["answer"] in ("yes", "no") and isinstance(value["sure"], bool)
    assert text.endswith("}")
    stop = [d for name, d in events if name == "message_delta"][0]
    assert stop["delta"]["stop_reason"] == "end_turn"


def test_output_format_is_an_alias_and_both_at_once_is_refused(scripted_server: LiveServer) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    body: dict[str, Any] = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 12,
        "messages": [{"role": "user", "content": "ok?"}],
        "output_format": {"type": "json_schema", "schema": schema},
    }
    beta = {**headers(scripted_server), "anthropic-beta": "structured-outputs-2025-11-13"}
    answer = httpx.post(f"{scripted_server.base_url}/v1/messages", headers=beta, json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert scripted_server.backend.calls[-1].output_config.format.json_schema == schema
    body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    both = httpx.post(f"{scripted_server.base_url}/v1/messages", headers=beta, json=body)
    assert both.status_code == 400
    assert "Both output_format and output_config.format were provided" in both.json()["error"]["message"]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}},
            "output_config.format.schema.properties.n: "
            "For 'integer' type, property 'minimum' is not supported",
        ),
        (
            {"type": "object", "properties": {"s": {"type": "string", "maxLength": 30000}}},
            "For 'string' type, property 'maxLength' is not supported",
        ),
        (
            {"type": "object", "properties": {}, "additionalProperties": True},
            "For 'object' type, 'additionalProperties' must be explicitly set to false",
        ),
        (
            {
                "$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
                "$ref": "#/$defs/n",
            },
            "Recursive schemas are not supported",
        ),
    ],
)
def test_unsupported_schema_features_are_refused_with_the_apis_wording(
    embedded_server: LiveServer, schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        embedded_server.client().messages.create(
            **embedded("hi", 10, output_config={"format": {"type": "json_schema", "schema": schema}})
        )
    assert message in caught.value.message


def test_strict_tool_schema_is_checked_like_an_output_schema(embedded_server: LiveServer) -> None:
    tool = {
        "name": "f",
        "strict": True,
        "input_schema": {"type": "object", "properties": {"n": {"type": "number", "maximum": 3}}},
    }
    response = httpx.post(
        f"{embedded_server.base_url}/v1/messages",
        headers=headers(embedded_server),
        json=embedded("x", 10, tools=[tool]),
    )
    assert response.status_code == 400
    assert (
        "tools.0.input_schema.properties.n: For 'number' type, property 'maximum' is not supported"
        in (response.json()["error"]["message"])
    )


@pytest.mark.parametrize("schema", [BIG_ARRAY, LONG_STRING], ids=["maxItems", "maxLength"])
def test_a_tool_schema_past_the_grammar_bounds_is_400_and_the_server_lives(
    embedded_server: LiveServer, schema: dict[str, Any]
) -> None:
    response = httpx.post(
        f"{embedded_server.base_url}/v1/messages",
        headers=headers(embedded_server),
        json=embedded(
            "call f", 16, tools=[{"name": "f", "input_schema": schema}], tool_choice={"type": "any"}
        ),
        timeout=60,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("tools.0.input_schema.properties.a.max")
    assert "more than the embedded model's grammar allows (256)" in error["message"]
    still_answers(embedded_server)


def test_chat_completions_required_tool_past_the_bounds_is_400(embedded_server: LiveServer) -> None:
    client = openai.OpenAI(
        base_url=f"{embedded_server.base_url}/v1", api_key=embedded_server.key, max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=EMBEDDED_MODEL,
            max_tokens=16,
            messages=[{"role": "user", "content": "call f"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": BIG_ARRAY}}],
            tool_choice="required",
        )
    assert "maxItems: 20000 is more than the embedded model's grammar allows" in str(caught.value)
    still_answers(embedded_server)


def test_a_batch_request_past_the_bounds_ends_errored(embedded_server: LiveServer) -> None:
    client = embedded_server.client()
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": "big",
                "params": embedded(
                    "call f",
                    16,
                    tools=[{"name": "f", "input_schema": LONG_STRING}],
                    tool_choice={"type": "any"},
                ),
            }
        ]
    )
    deadline = time.monotonic() + 60
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    (result,) = list(client.messages.batches.results(batch.id))
    assert result.result.type == "errored"
    assert result.result.error.error.type == "invalid_request_error"  # type: ignore[union-attr]
    assert "maxLength: 30000" in result.result.error.error.message  # type: ignore[union-attr]


def test_structured_output_pattern_past_the_bounds_is_400(embedded_server: LiveServer) -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[a-z]{5000}$"}}}
    response = httpx.post(
        f"{embedded_server.base_url}/v1/messages",
        headers=headers(embedded_server),
        json=embedded("code?", 16, output_config={"format": {"type": "json_schema", "schema": schema}}),
    )
    assert response.status_code == 400
    assert (
        "output_config.format.schema.properties.code.pattern: the repetition {5000}"
        in (response.json()["error"]["message"])
    )
    still_answers(embedded_server)


def test_openai_sdk_parse_gets_schema_valid_json(embedded_server: LiveServer) -> None:
    client = openai.OpenAI(
        base_url=f"{embedded_server.base_url}/v1", api_key=embedded_server.key, max_retries=0
    )
    completion = client.chat.completions.parse(
        model=EMBEDDED_MODEL,
        max_tokens=60,
        temperature=0,
        messages=[{"role": "user", "content": "Describe Madrid as JSON."}],
        response_format=City,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, City)


def test_models_report_structured_outputs(embedded_server: LiveServer) -> None:
    info = embedded_server.client().models.retrieve(EMBEDDED_MODEL)
    assert info.capabilities is not None
    assert info.capabilities.structured_outputs.supported is True
    assert info.capabilities.effort.supported is False


def test_chat_completions_response_format_reaches_the_model_as_output_config(
    scripted_server: LiveServer,
) -> None:
    client = openai_client(scripted_server)
    client.chat.completions.create(
        model=SCRIPTED_MODEL,
        max_tokens=5,
        messages=[{"role": "user", "content": "{}"}],
        response_format={"type": "json_object"},
    )
    seen = scripted_server.backend.calls[-1].output_config.format
    assert seen.type == "json_schema" and seen.json_schema == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    client.chat.completions.create(
        model=SCRIPTED_MODEL,
        max_tokens=5,
        messages=[{"role": "user", "content": "{}"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": schema, "strict": True},
        },
    )
    assert scripted_server.backend.calls[-1].output_config.format.json_schema == schema


# Literals a JSON string escapes: the grammar must write them escaped, as JSON.
AWKWARD = ['say "yes"', "back\\slash", "tab\there"]


def test_enum_values_with_quotes_and_backslashes_are_enforced(embedded_server: LiveServer) -> None:
    schema = {
        "type": "object",
        "properties": {"pick": {"type": "string", "enum": AWKWARD}},
        "required": ["pick"],
        "additionalProperties": False,
    }
    message = embedded_server.client().messages.create(
        **embedded("Pick one.", 30, output_config={"format": {"type": "json_schema", "schema": schema}}),
        extra_body=GREEDY,
    )
    assert message.stop_reason == "end_turn"
    assert json.loads(message.content[0].text)["pick"] in AWKWARD  # type: ignore[union-attr]


def test_a_strict_tool_with_quoted_const_and_enum_gets_one_of_them(embedded_server: LiveServer) -> None:
    tool = {
        "name": "choose",
        "strict": True,
        "input_schema": {
            "type": "object",
            "properties": {"pick": {"enum": AWKWARD}, "tag": {"const": 'a "b" \\c'}},
            "required": ["pick", "tag"],
            "additionalProperties": False,
        },
    }
    message = embedded_server.client().messages.create(
        **embedded("Choose.", 40, tools=[tool], tool_choice={"type": "tool", "name": "choose"}),
        extra_body=GREEDY,
    )
    (call,) = [b for b in message.content if b.type == "tool_use"]
    assert call.input["pick"] in AWKWARD and call.input["tag"] == 'a "b" \\c'  # type: ignore[index]


def test_an_unanchored_pattern_is_a_search(embedded_server: LiveServer) -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}\\d"}},
        "required": ["code"],
        "additionalProperties": False,
    }
    response = httpx.post(
        f"{embedded_server.base_url}/v1/messages",
        headers=headers(embedded_server),
        json=embedded(
            "Give a product code like AB1.",
            30,
            output_config={"format": {"type": "json_schema", "schema": schema}},
            **GREEDY,
        ),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["stop_reason"] == "end_turn", answer
    code = json.loads(answer["content"][0]["text"])["code"]
    assert re.search("^[A-Z]{2}\\d", code), code


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(?=a)b", "(?...) groups, lookarounds and flags are not supported"),
        ("a\\sb", "the escape \\s is not supported"),
        ("a(b", "a '(' is not closed with ')'"),
        ("x{3,1}", "the repetition {3,1} has its maximum below its minimum"),
        ("^((a{0,256}){0,256})$", "the repetition {0,256} counts a group that itself repeats"),
    ],
)
def test_a_pattern_the_grammar_cannot_enforce_is_a_400_in_our_words(
    embedded_server: LiveServer, pattern: str, reason: str
) -> None:
    schema = {
        "type": "object",
        "properties": {"x": {"type": "string", "pattern": pattern}},
        "required": ["x"],
    }
    with pytest.raises(anthropic.BadRequestError) as caught:
        embedded_server.client().messages.create(
            **embedded(
                "x",
                10,
                output_config={
                    "format": {"type": "json_schema", "schema": {**schema, "additionalProperties": False}}
                },
            )
        )
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith(f"output_config.format.schema.properties.x.pattern: {reason}"), message
    assert "Pattern must" not in message and "Unsupported pattern syntax" not in message


def test_a_grammar_llama_refuses_stays_out_of_stderr(
    embedded_server: LiveServer, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Zanzibar7Q"
    schema = {
        "type": "object",
        "properties": {"x": {"type": "string", "pattern": "^a**$"}, "y": {"const": secret}},
        "required": ["x", "y"],
        "additionalProperties": False,
    }
    capfd.readouterr()
    with caplog.at_level("WARNING", logger="wisegate.local"):
        response = httpx.post(
            f"{embedded_server.base_url}/v1/messages",
            headers=headers(embedded_server),
            json=embedded("x", 10, output_config={"format": {"type": "json_schema", "schema": schema}}),
        )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "output_config.format.schema: the embedded model cannot build a grammar for this schema"
    )
    captured = capfd.readouterr()  # llama.cpp printed "unsupported grammar, left recursion …" here
    assert secret not in captured.err and "grammar" not in captured.err, captured.err
    (record,) = [r for r in caplog.records if r.getMessage().startswith("llama.cpp refused")]
    assert record.field == "output_config.format.schema" and secret not in record.getMessage()  # type: ignore[attr-defined]
    still_answers(embedded_server)


def test_chat_completions_errors_name_the_openai_requests_fields(embedded_server: LiveServer) -> None:
    client = openai_client(embedded_server)
    bad = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1}},
        "additionalProperties": False,
    }
    with pytest.raises(openai.BadRequestError) as schema_error:
        client.chat.completions.create(
            model=EMBEDDED_MODEL,
            max_tokens=5,
            messages=[{"role": "user", "content": "n?"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "n", "schema": bad, "strict": True},
            },
        )
    assert schema_error.value.body["message"].startswith(  # type: ignore[index]
        "response_format.json_schema.schema.properties.n: For 'integer' type, property 'minimum'"
    )
    with pytest.raises(openai.BadRequestError) as tool_error:
        client.chat.completions.create(
            model=EMBEDDED_MODEL,
            max_tokens=5,
            messages=[{"role": "user", "content": "call f"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": BIG_ARRAY}}],
            tool_choice="required",
        )
    assert tool_error.value.body["message"].startswith(  # type: ignore[index]
        "tools.0.function.parameters.properties.a.maxItems: 20000 is more than"
    )
    with pytest.raises(openai.BadRequestError) as limit_error:
        client.chat.completions.create(
            model=EMBEDDED_MODEL, max_completion_tokens=100_000, messages=[{"role": "user", "content": "hi"}]
        )
    assert limit_error.value.body["message"].startswith("max_completion_tokens: 100000 > 2048")  # type: ignore[index]
    assert all(
        "output_config" not in str(e.value) and "input_schema" not in str(e.value)
        for e in (schema_error, tool_error)
    )


def test_strict_must_be_a_boolean(scripted_server: LiveServer) -> None:
    response = httpx.post(
        f"{scripted_server.base_url}/v1/messages",
        headers=headers(scripted_server),
        json={
            "model": SCRIPTED_MODEL,
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "f", "strict": "yes", "input_schema": {"type": "object"}}],
        },
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error == {
        "type": "invalid_request_error",
        "message": "tools.0.custom.strict: Input should be a valid boolean",
    }
