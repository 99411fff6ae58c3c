"""Structured outputs: the ``output_config.format`` shape and the JSON Schema subset the Claude API takes.

The same subset applies to ``output_config.format.schema`` and to the ``input_schema`` of tools with
``strict: true`` (what the SDK's ``transform_schema`` produces): the types, ``enum``/``const``,
``anyOf``/``allOf``, ``$ref``/``$defs``, ``properties``/``required``, ``additionalProperties: false``,
``pattern``, the string formats below, and ``minItems`` of 0 or 1. Everything else is refused with
the Claude API's wording (``For 'integer' type, property 'minimum' is not supported``) instead of
being silently ignored; recursive ``$ref`` s are refused too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wisegate.protocol.bounds import echo
from wisegate.protocol.numbers import Integer

STRING_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid", "text"}
)
_UNSUPPORTED: dict[str, tuple[str, ...]] = {
    "integer": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    "string": ("minLength", "maxLength"),
    "array": ("maxItems", "uniqueItems", "contains", "minContains", "maxContains", "prefixItems"),
    "object": ("minProperties", "maxProperties", "patternProperties", "propertyNames", "dependentSchemas"),
}
_ANYWHERE = ("not", "if", "then", "else", "oneOf")


class JsonOutputFormat(BaseModel):
    """``{"type": "json_schema", "schema": {...}}``: the answer's text is JSON valid for ``schema``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    type: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")


class SchemaUnsupported(ValueError):
    """A schema feature structured outputs do not support (the message is the API's)."""


def check_schema(schema: dict[str, Any], where: str) -> None:
    """Raise :class:`SchemaUnsupported` for the first feature outside the supported subset."""
    definitions: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            definitions.update({f"#/{key}/{name}": value for name, value in schema[key].items()})
    _check(schema, where, definitions, ())


def _check(node: Any, where: str, definitions: dict[str, Any], refs: tuple[str, ...]) -> None:
    if not isinstance(node, dict):
        if isinstance(node, bool):
            return
        raise SchemaUnsupported(f"{where}: a schema must be a JSON object")
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref == "#" or ref in refs:
            raise SchemaUnsupported(f"{where}: Recursive schemas are not supported")
        if ref not in definitions:
            raise SchemaUnsupported(f"{where}: $ref '{echo(ref)}' does not name a definition in $defs")
        _check(definitions[ref], where, definitions, (*refs, ref))
    for key in _ANYWHERE:
        if key in node and not (key == "oneOf" and isinstance(node[key], list)):
            raise SchemaUnsupported(f"{where}: property '{echo(key)}' is not supported")
    types = node.get("type")
    for kind in types if isinstance(types, list) else [types] if isinstance(types, str) else []:
        for key in _UNSUPPORTED.get(kind, ()):
            if key in node:
                raise SchemaUnsupported(
                    f"{where}: For '{echo(kind)}' type, property '{echo(key)}' is not supported"
                )
        if kind == "array" and node.get("minItems") not in (None, 0, 1):
            raise SchemaUnsupported(
                f"{where}: For 'array' type, 'minItems' values other than 0 or 1 are not supported"
            )
        if kind == "string" and "format" in node and node["format"] not in STRING_FORMATS:
            raise SchemaUnsupported(
                f"{where}: For 'string' type, format '{echo(node['format'])}' is not supported"
            )
        if kind == "object" and node.get("additionalProperties", False) is not False:
            raise SchemaUnsupported(
                f"{where}: For 'object' type, 'additionalProperties' must be explicitly set to false"
            )
    for name, child in (node.get("properties") or {}).items():
        _check(child, f"{where}.properties.{name}", definitions, refs)
    if "items" in node:
        _check(node["items"], f"{where}.items", definitions, refs)
    for key in ("anyOf", "allOf", "oneOf"):
        for index, child in enumerate(node.get(key) or []):
            _check(child, f"{where}.{key}.{index}", definitions, refs)


class TaskBudget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["tokens"]
    total: Integer
    remaining: Integer | None = None


class OutputConfig(BaseModel):
    """``output_config``: effort, the answer's format, the task budget (newer fields pass along)."""

    model_config = ConfigDict(extra="allow")

    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JsonOutputFormat | None = None
    task_budget: TaskBudget | None = None
