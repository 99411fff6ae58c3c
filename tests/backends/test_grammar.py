"""backends/local/grammar.py: bounds, grammar shape, and the scaffolding filter of text.py."""

from __future__ import annotations

import json

import pytest

from wisegate.backends.local.grammar import (
    REPETITION_LIMIT,
    GrammarRefused,
    GrammarUnsupported,
    answer_gbnf,
    check_schema,
    group_depth,
    schema_gbnf,
)
from wisegate.backends.local.patterns import whole_string
from wisegate.backends.local.text import SpanFilter


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"type": "array", "maxItems": 20000}, "s.maxItems"),
        ({"type": "string", "minLength": REPETITION_LIMIT + 1}, "s.minLength"),
        (
            {"type": "object", "properties": {"a": {"type": "string", "maxLength": 30000}}},
            "s.properties.a.maxLength",
        ),
        ({"type": "string", "pattern": "^a{1,9999}$"}, "s.pattern"),
        (
            {"type": "array", "items": {"anyOf": [{"type": "string", "maxLength": 1000}]}},
            "s.items.anyOf.0.maxLength",
        ),
    ],
)
def test_repetitions_past_the_limit_are_refused_naming_the_field(
    schema: dict[str, object], field: str
) -> None:
    with pytest.raises(GrammarRefused) as caught:
        check_schema(schema, "s")
    assert caught.value.message.startswith(field + ":")


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"type": "string", "maxLength": -1}, "s.maxLength: must be a non-negative integer"),
        ({"type": "string", "minLength": 1.5}, "s.minLength: must be a non-negative integer"),
        ({"type": "array", "maxItems": True}, "s.maxItems: must be a non-negative integer"),
        ({"type": "string", "pattern": 5}, "s.pattern: must be a string"),
    ],
)
def test_invalid_json_schema_values_are_refused(schema: dict[str, object], why: str) -> None:
    with pytest.raises(GrammarRefused) as caught:
        check_schema(schema, "s")
    assert caught.value.message.startswith(why), caught.value.message


def test_nesting_past_the_limit_is_refused() -> None:
    schema: dict[str, object] = {"type": "string"}
    for _ in range(40):
        schema = {"type": "array", "items": schema}
    with pytest.raises(GrammarRefused, match="nests more than 32 levels"):
        check_schema(schema, "s")


def test_bounded_grammars_end_at_the_value() -> None:
    text = schema_gbnf({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, "s")
    root = next(line for line in text.splitlines() if line.startswith("root ::="))
    assert root.endswith('"}"'), root
    assert (
        group_depth(schema_gbnf({"type": "array", "maxItems": REPETITION_LIMIT}, "s")) <= REPETITION_LIMIT + 2
    )


def test_answer_grammar_with_tools_also_allows_the_tool_call_marker() -> None:
    text = answer_gbnf({"type": "boolean"}, "s", tool_call_open="<tool_call>")
    assert 'root ::= answer-json | "<tool_call>"' in text
    assert text.count("root ::=") == 1


@pytest.mark.parametrize(
    ("pattern", "whole"),
    [
        ("b", "^.*(b).*$"),
        ("^a", "^(a).*$"),
        ("a$", "^.*(a)$"),
        ("^a|b$", "^a|b$"),
        ("", "^.*$"),
        ("\\d+\\.x", "^.*([0-9]+[\\x2E]x).*$"),
        ("^[^a]$", '^[^a"\\\\\\x00-\\x1F]$'),
        ("a]", "^.*(a[\\x5D]).*$"),
    ],
)
def test_patterns_are_searches_rewritten_for_the_whole_string(pattern: str, whole: str) -> None:
    assert whole_string(pattern) == whole


@pytest.mark.parametrize(
    "pattern", ["(?:a)", "(?=a)", "\\1", "\\s", "a^b", "a(b", "a)b", "x{3,1}", "{2}", 'a"', "[]", "[a"]
)
def test_patterns_the_grammar_cannot_enforce_are_refused_naming_the_field(pattern: str) -> None:
    with pytest.raises(GrammarUnsupported) as caught:
        schema_gbnf({"type": "object", "properties": {"p": {"type": "string", "pattern": pattern}}}, "s")
    assert caught.value.message.startswith("s.properties.p.pattern: ")


@pytest.mark.parametrize(
    "pattern",
    [
        "^((a{0,256}){0,256})$",
        "^(a?){0,64}$",
        "^(x(a*)y){0,4}$",
        "^(a|b?){3}$",
        "^(a*){2,}$",
        "^((a|){256}){0,256}$",  # the first with an empty alternative (a second review: wedged for 90 s)
        "^(a|aa){0,256}$",  # 7 s a token
    ],
)
def test_a_counted_repetition_of_a_repeating_group_is_refused(pattern: str) -> None:
    """One token of ``(a{0,256}){0,256}`` kept the model runner busy for minutes (a review found it)."""
    with pytest.raises(GrammarUnsupported, match=r"counts a group that itself repeats .* with \* or \+"):
        schema_gbnf({"type": "object", "properties": {"p": {"type": "string", "pattern": pattern}}}, "s")


@pytest.mark.parametrize(
    "pattern", ["^(a{2}){0,128}$", "^([a-z]+\\.)*[a-z]+$", "^(a+)+$", "^(ab){2,5}$", "^(a*)?$", "^a{0,256}$"]
)
def test_repetitions_that_stay_cheap_are_kept(pattern: str) -> None:
    schema_gbnf({"type": "object", "properties": {"p": {"type": "string", "pattern": pattern}}}, "s")


@pytest.mark.parametrize(
    "members",
    [
        [{"type": "string"}, {"type": "integer"}],  # let the model write {} (a review found it)
        [{"enum": ["x", "y"]}, {"enum": ["y", "z"]}],
        [{"$ref": "#/$defs/Name"}],
        [{"type": "string", "properties": {}}],  # properties do not make it an object (a second review)
        [{"type": "object", "anyOf": [{"type": "string"}]}],  # the converter drops the anyOf
    ],
)
def test_all_of_is_refused_unless_its_members_are_objects(members: list[object]) -> None:
    schema = {
        "$defs": {"Name": {"type": "string"}},
        "type": "object",
        "properties": {"c": {"allOf": members}},
    }
    with pytest.raises(
        GrammarUnsupported, match=r"^s\.properties\.c\.allOf\.0: .* only over plain object schemas"
    ):
        schema_gbnf(schema, "s")


def test_all_of_members_may_not_share_a_property() -> None:
    """Both were written: the model answered {"x": "b", "x": "b"} for ^a+$ and ^b+$ (a second review)."""
    members = [{"properties": {"x": {"pattern": "^a+$"}}}, {"properties": {"x": {"pattern": "^b+$"}}}]
    with pytest.raises(GrammarUnsupported, match=r"^s\.allOf\.1: property x is also defined by allOf\.0"):
        schema_gbnf({"allOf": members}, "s")


def test_all_of_objects_are_merged() -> None:
    schema = {
        "$defs": {"B": {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}},
        "allOf": [{"properties": {"a": {"const": "x"}}, "required": ["a"]}, {"$ref": "#/$defs/B"}],
    }
    text = schema_gbnf(schema, "s")
    assert '\\"a\\"' in text and '\\"b\\"' in text


def test_literals_are_escaped_as_json_in_the_grammar() -> None:
    values = ['a "b"', "c\\d", "e\tf"]
    # Each value's JSON text, as a GBNF literal: its backslashes and quotes escaped once more.
    literals = ['"' + json.dumps(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    assert schema_gbnf({"enum": values}, "s").splitlines()[0] == "root ::= " + " | ".join(literals)


def test_group_depth_ignores_literals_and_classes() -> None:
    assert group_depth('root ::= "((((" [(] (a (b)?)?') == 2


def test_span_filter_drops_echoed_tool_responses_across_pieces() -> None:
    spans = SpanFilter("<tool_response>", "</tool_response>")
    pieces = [
        "<tool_",
        'response>{"t": 1}</tool',
        "_response>\n",
        "It is sunny",
        " </tool_response>",
        ". <t",
        "ag>",
    ]
    out = "".join(spans.feed(p) for p in pieces) + spans.flush()
    assert out == "\nIt is sunny . <tag>"


def test_span_filter_remembers_what_it_dropped() -> None:
    spans = SpanFilter("<tool_response>", "</tool_response>")
    out = spans.feed("<tool_response>18 degrees") + spans.feed(", sunny</tool_response>") + spans.flush()
    assert out == "" and spans.dropped == ["18 degrees, sunny"]
