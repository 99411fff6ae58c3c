"""The nesting bound of JSON documents, checked on the bytes before (or while) a parser reads them.

A parser's memory and stack grow with nesting (ijson's prefixes with its square), so a few hundred
kilobytes of ``[[[[…`` could exhaust the server before any validation ran. ``DepthGuard`` scans the
text as it arrives and raises ``TooDeep`` once an array or object opens deeper than the bound, in
constant memory whatever the chunking, at C speed (bytes methods, one regular expression, no
per-character Python loop). It does not validate the JSON: the parser after it does — except, with
``finite=True``, for ``NaN``, ``Infinity`` and ``-Infinity``, which are no JSON but which Python's and
pydantic's parsers accept (the Claude API refuses them): ``NotFinite`` as soon as one appears.

    guard = DepthGuard()
    for chunk in chunks:
        guard.feed(chunk)       # raises TooDeep past the bound
        parser.feed(chunk)
"""

from __future__ import annotations

import json
import math
import re
from array import array
from itertools import accumulate

MAX_JSON_DEPTH = 128

# Once escapes are gone, every quote delimits a string: a whole one, or one still open at the end.
_STRINGS = re.compile(rb'"[^"]*(?:"|\Z)')
# Brackets as signed bytes (+1 opens, -1 closes); everything else dropped.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_LEAF_AFTER_CLOSE = b"\xff\x01\xff"  # ``][]``: the leaf is no deeper than the sibling before it
_LEAF_BEFORE_OPEN = b"\x01\xff\x01"  # ``[][``: nor deeper than the sibling after it
_SLICE = 1024 * 1024


class TooDeep(ValueError):
    """A JSON document nests arrays and objects deeper than the bound."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")
        self.limit = limit


class NotFinite(ValueError):
    """A JSON text holds ``NaN`` or ``Infinity`` outside its strings."""

    def __init__(self) -> None:
        super().__init__("NaN and Infinity are not JSON numbers")


class TooLong(ValueError):
    """A JSON text holds an integer longer than Python converts (``sys.get_int_max_str_digits``)."""

    def __init__(self, digits: int) -> None:
        super().__init__(f"an integer of {digits} digits is longer than the {MAX_INT_DIGITS} digits allowed")
        self.digits = digits


class NotJSON(ValueError):
    """The text is not JSON (the message says where, never quotes the text)."""


MAX_INT_DIGITS = 4300  # Python's default int/str conversion bound: past it ``int()`` raises


def refuse_constant(_literal: str) -> object:
    """``json.loads(text, parse_constant=refuse_constant)``: ``NotFinite`` instead of ``nan``/``inf``."""
    raise NotFinite()


def bounded_int(digits: str) -> int:
    """``json.loads(text, parse_int=bounded_int)``: ``TooLong`` instead of ``int``'s ValueError, whose
    message tells the reader to call ``sys.set_int_max_str_digits``."""
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise TooLong(len(digits.lstrip("-")))
    return int(digits)


def finite_float(text: str) -> float:
    """``json.loads(text, parse_float=finite_float)``: ``1e400`` overflows to ``inf``; ``NotFinite``."""
    value = float(text)
    if math.isinf(value):
        raise NotFinite()
    return value


def parse_json(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> object:
    """A JSON text a client controls, parsed within bounds: ``TooDeep`` past ``limit`` levels,
    ``TooLong`` for an integer past ``MAX_INT_DIGITS`` digits, ``NotJSON`` for anything else that is
    not JSON (``NaN`` and ``Infinity`` included) — each a ``ValueError`` whose message can be shown."""
    check_depth(text, limit)
    try:
        return json.loads(
            text, parse_constant=refuse_constant, parse_int=bounded_int, parse_float=finite_float
        )
    except json.JSONDecodeError as exc:
        raise NotJSON(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except NotFinite as exc:
        raise NotJSON(f"not valid JSON: {exc}") from None
    except RecursionError:  # cannot happen below ``limit`` levels; a bound is kept whatever the limit
        raise TooDeep(limit) from None


class DepthGuard:
    """Incremental nesting check over a JSON text fed in chunks of any size (and, ``finite``, no
    ``NaN`` / ``Infinity`` literal)."""

    def __init__(self, limit: int = MAX_JSON_DEPTH, *, finite: bool = False) -> None:
        self.limit = limit
        self._finite = finite
        self._depth = 0
        self._in_string = False
        self._backslash = False  # the previous chunk ended on an unpaired backslash

    def feed(self, chunk: bytes) -> None:
        for start in range(0, len(chunk), _SLICE):
            self._feed(chunk[start : start + _SLICE])

    def _feed(self, chunk: bytes) -> None:
        data = b"\\" + chunk if self._backslash else chunk
        # Backslashes pair from the left; an odd run at the end waits for the byte it escapes.
        self._backslash = (len(data) - len(data.rstrip(b"\\"))) % 2 == 1
        if self._backslash:
            data = data[:-1]
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
        if self._in_string:
            data = b'"' + data
        self._in_string = data.count(b'"') % 2 == 1
        outside = _STRINGS.sub(b"", data)
        # Outside strings JSON has no capital letter: an ``N`` or ``I`` starts ``NaN`` or ``Infinity``.
        if self._finite and (b"N" in outside or b"I" in outside):
            raise NotFinite()
        steps = outside.translate(_STEPS, _NOT_BRACKETS)
        opened = steps.count(1)
        if self._depth + opened > self.limit and self._depth + _highest(steps) > self.limit:
            raise TooDeep(self.limit)
        self._depth += 2 * opened - len(steps)


def _highest(steps: bytes) -> int:
    """The deepest level the brackets reach, relative to where they start."""
    while True:  # drop leaves that cannot be the deepest point, while that shrinks the work a lot
        pruned = steps.replace(_LEAF_AFTER_CLOSE, b"\xff").replace(_LEAF_BEFORE_OPEN, b"\x01")
        if len(pruned) > len(steps) * 3 // 4:
            steps = pruned
            break
        steps = pruned
    levels = array("b")
    levels.frombytes(steps)
    return max(accumulate(levels), default=0)


def check_depth(text: bytes | str, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise ``TooDeep`` when the JSON ``text`` nests deeper than ``limit`` (a whole document)."""
    data = text.encode() if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return  # cannot be deeper: the common case, at the speed of a byte count
    DepthGuard(limit).feed(data)
