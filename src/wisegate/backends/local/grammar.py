"""Grammars the embedded model samples under, built from JSON schemas, and what a schema may cost.

llama.cpp's grammar sampler is native code: a grammar it refuses to parse leaves llama-cpp-python
with a null sampler, and a repetition it expands past its limits overflows the stack — either way
the process dies (``maxItems: 20000`` or ``maxLength: 30000`` in a tool schema did). So every
grammar the engine samples with is built here, from the request, before generation starts:

- the schema's repetition counts (``minItems``/``maxItems``, ``minLength``/``maxLength``,
  ``minProperties``/``maxProperties`` and ``{m,n}`` in a ``pattern``) are at most
  :data:`REPETITION_LIMIT`, its nesting at most :data:`DEPTH_LIMIT` levels;
- the grammar text is at most :data:`SIZE_LIMIT` bytes and its groups nest at most
  :data:`GROUP_DEPTH_LIMIT` deep;
- llama.cpp itself parses it once (:meth:`GrammarBook.verified`) with the model's vocabulary; a
  refusal is a 400, never a crash.

A schema past a bound is a :class:`~wisegate.errors.InvalidRequest` naming the field. The same
module serves tool inputs (``tool_choice`` any/tool, strict tools, the chat completions
``tool_choice: "required"``, batches — all reach the engine through here) and structured outputs.

Grammars end where the JSON value ends: the converter's trailing optional whitespace is removed,
so a streamed tool input never ends with a ``" "`` delta and an answer ends with its closing brace.
Literals (``enum``, ``const``, property names) are escaped as JSON, and each ``pattern`` is first
rewritten into one the converter enforces (``patterns.py``); what it cannot is a 400 in our words,
naming the field, never the converter's or llama.cpp's.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from wisegate.backends.local import patterns
from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import echo

log = logging.getLogger("wisegate.local")

REPETITION_LIMIT = 256
"""The largest ``min/max`` Items/Length/Properties (and ``{m,n}`` in patterns) a grammar expands."""
DEPTH_LIMIT = 32
"""How deeply schemas may nest (objects in arrays in objects …)."""
SIZE_LIMIT = 256 * 1024
"""The largest grammar text, in bytes."""
GROUP_DEPTH_LIMIT = 512
"""How deeply the grammar's parenthesised groups may nest (what llama.cpp's parser recurses on)."""

_COUNTS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
_NESTED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_NESTED_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_NESTED_ONE = ("items", "additionalProperties", "not", "contains", "if", "then", "else")


class GrammarRefused(InvalidRequest):
    """A schema whose grammar would cost more than the bounds allow, or that llama.cpp refuses."""


class GrammarUnsupported(InvalidRequest):
    """A schema the JSON-schema-to-grammar converter cannot express (a non-strict tool falls back)."""


def check_schema(schema: Any, where: str) -> None:
    """Raise :class:`GrammarRefused` when ``schema`` is past a bound; ``where`` names it for the message."""
    _walk(schema, where, 0)


def _walk(node: Any, path: str, depth: int) -> None:
    if isinstance(node, list):
        for index, item in enumerate(node):
            _walk(item, f"{path}.{index}", depth)
        return
    if not isinstance(node, dict):
        return
    if depth > DEPTH_LIMIT:
        raise GrammarRefused(
            f"{path}: the schema nests more than {DEPTH_LIMIT} levels deep, more than the embedded "
            "model's grammar allows; flatten it"
        )
    for key in _COUNTS:
        value = node.get(key)
        if key in node and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise GrammarRefused(
                f"{path}.{key}: must be a non-negative integer (JSON Schema), got {echo(value)}"
            )
        if isinstance(value, int) and value > REPETITION_LIMIT:
            raise GrammarRefused(
                f"{path}.{key}: {value} is more than the embedded model's grammar allows "
                f"({REPETITION_LIMIT}); lower it or leave it out and check the value yourself"
            )
    pattern = node.get("pattern")
    if "pattern" in node and not isinstance(pattern, str):
        raise GrammarRefused(f"{path}.pattern: must be a string (a regular expression)")
    if isinstance(pattern, str):
        for match in _QUANTIFIER.finditer(pattern):
            numbers = [int(n) for n in match.groups() if n]
            if any(n > REPETITION_LIMIT for n in numbers):
                raise GrammarRefused(
                    f"{path}.pattern: the repetition {match.group(0)} is more than the embedded "
                    f"model's grammar allows ({REPETITION_LIMIT})"
                )
    for key in _NESTED:
        children = node.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                _walk(child, f"{path}.{key}.{name}", depth + 1)
    for key in _NESTED_LISTS:
        if isinstance(node.get(key), list):
            _walk(node[key], f"{path}.{key}", depth + 1)
    for key in _NESTED_ONE:
        if key in node:
            _walk(node[key], f"{path}.{key}", depth + 1)


def schema_gbnf(schema: dict[str, Any], where: str) -> str:
    """The GBNF grammar of JSON valid for ``schema``, bounded; raises ``GrammarRefused`` past a bound
    and ``GrammarUnsupported`` when the converter cannot express the schema."""
    check_schema(schema, where)
    _check_all_of(schema, schema, where)
    schema = _with_whole_string_patterns(schema, where)
    try:
        text = _convert(json.dumps(schema))
    except RecursionError:
        raise GrammarRefused(f"{where}: the schema is too deeply nested for the embedded model") from None
    except Exception:  # the converter's own words name neither the field nor what to do
        raise GrammarUnsupported(
            f"{where}: the embedded model cannot build a grammar for this schema"
        ) from None
    check_gbnf(text, where)
    return text


def _check_all_of(node: Any, root: dict[str, Any], path: str) -> None:
    """Refuse an ``allOf`` the grammar would not enforce: the converter writes the ``properties`` of
    every member into one object and drops each member's other keywords, so a member that is not a
    plain object schema (``{type: string}``, or ``anyOf``/``enum`` beside its properties) was ignored
    and the model wrote ``{}``, and a property named by two members was written twice. A member may be
    a local ``$ref`` to such an object schema. Reviews found both."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            _check_all_of(item, root, f"{path}.{index}")
        return
    if not isinstance(node, dict):
        return
    members = node.get("allOf")
    if isinstance(members, list):
        seen: dict[str, int] = {}
        for index, member in enumerate(members):
            target = _local_ref(member, root) if isinstance(member, dict) and "$ref" in member else member
            where = f"{path}.allOf.{index}"
            if not (
                isinstance(target, dict)
                and target.get("type", "object") == "object"
                and ("properties" in target or target.get("type") == "object")
                and set(target) <= _ALL_OF_KEYS
            ):
                raise GrammarUnsupported(
                    f"{where}: the embedded model enforces allOf only over plain object schemas (type, "
                    "properties, required, additionalProperties; their properties are merged); write this "
                    "constraint as one schema"
                )
            for name in target.get("properties") or {}:
                if name in seen:
                    raise GrammarUnsupported(
                        f"{where}: property {echo(name)} is also defined by allOf.{seen[name]}; the "
                        "embedded model merges allOf members and cannot enforce both, so define it once"
                    )
                seen[name] = index
    for key, value in node.items():
        if key != "enum" and key != "const":
            _check_all_of(value, root, f"{path}.{key}")


_ALL_OF_KEYS = frozenset({"type", "properties", "required", "additionalProperties", "title", "description"})


def _local_ref(member: dict[str, Any], root: dict[str, Any]) -> Any:
    """What a ``#/…`` reference points to in ``root``, or None."""
    ref = member.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return None
    target: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            return None
        target = target[part]
    return target


def _with_whole_string_patterns(node: Any, path: str) -> Any:
    """``node`` with every subschema's ``pattern`` rewritten by :func:`patterns.whole_string`."""
    if isinstance(node, list):
        return [_with_whole_string_patterns(item, f"{path}.{index}") for index, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    copy = dict(node)
    if isinstance(node.get("pattern"), str):
        try:
            copy["pattern"] = patterns.whole_string(node["pattern"])
        except ValueError as exc:
            raise GrammarUnsupported(f"{path}.pattern: {exc}") from None
        try:
            _convert(json.dumps({"type": "string", "pattern": copy["pattern"]}))
        except Exception:  # unbalanced groups, a malformed {m,n}: the converter's words name no field
            raise GrammarUnsupported(
                f"{path}.pattern: the embedded model cannot enforce this pattern; {patterns.SUPPORTED}"
            ) from None
    for key in _NESTED:
        if isinstance(node.get(key), dict):
            copy[key] = {
                name: _with_whole_string_patterns(child, f"{path}.{key}.{name}")
                for name, child in node[key].items()
            }
    for key in (*_NESTED_LISTS, *_NESTED_ONE):
        if key in node:
            copy[key] = _with_whole_string_patterns(node[key], f"{path}.{key}")
    return copy


@functools.lru_cache(maxsize=512)
def _convert(schema_json: str) -> str:
    """llama.cpp's JSON-schema converter (pure Python) with JSON-correct literals, memoised: the same
    tools come with every turn."""
    converter = _converter_class()(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(json.loads(schema_json), "stdin"), "")
    return _without_trailing_space(converter.format_grammar())


@functools.cache
def _converter_class() -> type[Any]:
    """llama-cpp-python's ``SchemaConverter``, corrected where its grammar is not JSON.

    Its literals escape ``"`` but not ``\\``: an ``enum``/``const`` value or property name holding
    ``"`` broke the grammar, one holding ``\\`` or a tab let the model write invalid JSON. And a
    pattern's ``.`` could write ``"`` or ``\\`` unescaped inside the JSON string.
    """
    from llama_cpp.llama_grammar import DOT, SchemaConverter

    class Converter(SchemaConverter):
        def _format_literal(self, literal: str) -> str:
            return '"' + _LITERAL_SPECIAL.sub(_literal_escape, literal) + '"'

        def _add_rule(self, name: str, rule: str) -> str:
            if name == "dot" and rule == DOT:
                rule = _JSON_DOT
            key: str = super()._add_rule(name, rule)  # type: ignore[no-untyped-call]
            return key

    return Converter


_LITERAL_SPECIAL = re.compile(r'["\\\x00-\x1f]')
# ``.`` in a pattern: one character a JSON string holds unescaped (so no line break, as in a regex).
_JSON_DOT = r'[^"\\\x7F\x00-\x1F]'


def _literal_escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02X}")


def answer_gbnf(schema: dict[str, Any], where: str, *, tool_call_open: str | None) -> str:
    """The grammar of a structured answer: JSON for ``schema``, or (with tools) the tool-call marker."""
    text = schema_gbnf(schema, where)
    if tool_call_open is None:
        return text
    renamed = re.sub(r"^root ::=", "answer-json ::=", text, count=1, flags=re.MULTILINE)
    return renamed + f"\nroot ::= answer-json | {json.dumps(tool_call_open)}\n"


def check_gbnf(text: str, where: str) -> None:
    """Bound the grammar text's size and the nesting of its groups."""
    if len(text.encode("utf-8")) > SIZE_LIMIT:
        raise GrammarRefused(
            f"{where}: the schema's grammar is larger than the embedded model allows "
            f"({SIZE_LIMIT // 1024} KiB); simplify the schema"
        )
    if group_depth(text) > GROUP_DEPTH_LIMIT:
        raise GrammarRefused(
            f"{where}: the schema's grammar nests more than {GROUP_DEPTH_LIMIT} groups deep; "
            "lower its repetition counts"
        )


def group_depth(text: str) -> int:
    """The deepest nesting of ``( … )`` groups in GBNF text, outside string literals and classes."""
    deepest = depth = 0
    index, size = 0, len(text)
    while index < size:
        char = text[index]
        if char in '"[':
            close = '"' if char == '"' else "]"
            index += 1
            while index < size and text[index] != close:
                index += 2 if text[index] == "\\" else 1
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
        elif char == "#":
            while index < size and text[index] != "\n":
                index += 1
        index += 1
    return deepest


def _without_trailing_space(text: str) -> str:
    """The converter ends the root rule with optional whitespace; a value ends at its last character."""
    return re.sub(r"^(root ::= .*?) space$", r"\1", text, count=1, flags=re.MULTILINE)


class GrammarBook:
    """Verified grammars by text, so each distinct grammar is parsed by llama.cpp once.

    ``verify`` runs llama.cpp's own parser with the model's vocabulary and frees the result; a grammar
    it refuses raises ``GrammarRefused`` instead of reaching the sampler. Thread-safe.
    """

    def __init__(self, parse: Callable[[str], bool], capacity: int = 256) -> None:
        self._parse = parse
        self._capacity = capacity
        self._good: dict[str, None] = {}
        self._lock = threading.Lock()

    def verified(self, text: str, where: str) -> str:
        with self._lock:
            if text in self._good:
                return text
        if not self._parse(text):
            # llama.cpp's own report (withheld, see Vocabulary.parses) quotes the schema: not logged.
            log.warning("llama.cpp refused the grammar built for %s", where, extra={"field": where})
            raise GrammarRefused(f"{where}: the embedded model cannot build a grammar for this schema")
        with self._lock:
            self._good[text] = None
            while len(self._good) > self._capacity:
                self._good.pop(next(iter(self._good)))
        return text
