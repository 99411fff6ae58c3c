"""Lone UTF-16 surrogates in JSON text: ``"\\ud800"`` is valid JSON syntax but encodes no Unicode text.

Such a string cannot be encoded as UTF-8, so it would fail deep inside the server (a database write, a
log line, a tokenizer) or be silently replaced (ijson's C backend turns a lone high surrogate into
``?``). The Claude API refuses it as invalid JSON ("no low surrogate in string"); we do the same, and
also name the field that holds it:

- ``find_lone_surrogate(data)``: where the first escape of an unpaired surrogate is in JSON bytes;
- ``surrogate_path(value)``: the dotted path of the first string (or key) of a decoded value that
  holds one (``json.loads`` keeps them);
- ``SurrogateGuard``: the same check over a body read in chunks, which hands on only the bytes before a
  lone surrogate, so the parser after it stops right where the bad string begins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# A run of backslashes and a surrogate's hex escape: an odd run ends in the escape's own backslash.
_SURROGATE_ESCAPE = re.compile(rb"(\\+)u([dD][89a-fA-F][0-9a-fA-F]{2})")
_LOW_ESCAPE = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_PAIR = 12  # bytes of an escaped surrogate pair: what must be seen to judge an escape
_SURROGATE_CHAR = re.compile("[\ud800-\udfff]")


def problem(code: int, what: str = "The request body") -> str:
    """The Claude API's words for a lone surrogate ``code`` in ``what``, and what it is."""
    kind = "no low surrogate in string" if code < 0xDC00 else "no high surrogate in string"
    return f"{what} is not valid JSON: {kind} (\\u{code:04x} is an unpaired UTF-16 surrogate)"


def find_lone_surrogate(data: bytes) -> tuple[int, int] | None:
    """(offset of the escape's backslash, code) of the first ``\\uXXXX`` escape in ``data`` that is a
    surrogate without its partner, or ``None``."""
    for offset, code, _decided in _lone_escapes(data):
        return offset, code
    return None


def _lone_escapes(data: bytes, paired_low_at: int = -1) -> Iterator[tuple[int, int, bool]]:
    """Each lone surrogate escape of ``data`` in order: (offset, code, whether the bytes after it were
    enough to decide). A high escape at the very end is yielded undecided (its low may follow)."""
    for match in _SURROGATE_ESCAPE.finditer(data):
        if len(match.group(1)) % 2 == 0:
            continue  # escaped backslashes, then a plain "u…"
        start = match.end() - 6
        code = int(match.group(2), 16)
        if code >= 0xDC00:
            if start != paired_low_at:
                yield start, code, True
            continue
        following = data[match.end() : match.end() + 6]
        if _LOW_ESCAPE.fullmatch(following):
            paired_low_at = match.end()
            continue
        yield start, code, len(following) == 6 or not b"\\u".startswith(following[:2])


def surrogate_path(value: object, path: str = "") -> tuple[str, int] | None:
    """(dotted path, code) of the first string of ``value`` (or key, named by its object's path) that
    holds a lone surrogate; ``None`` if there is none."""
    if isinstance(value, str):
        char = _SURROGATE_CHAR.search(value)
        return (path, ord(char.group())) if char else None
    if isinstance(value, dict):
        for key, item in value.items():
            if (found := surrogate_path(key, path)) is not None:
                return found
            if (found := surrogate_path(item, f"{path}.{key}" if path else str(key))) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := surrogate_path(item, f"{path}.{index}" if path else str(index))) is not None:
                return found
    return None


def position(data: bytes, offset: int) -> str:
    """``line L column C (char N)`` of byte ``offset`` of ``data``, as JSON parsers report places."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    char = len(data[:offset].decode("utf-8", "replace"))
    line = data.count(b"\n", 0, offset) + 1
    return f"line {line} column {column} (char {char})"


class LoneSurrogate(ValueError):
    """A lone surrogate escape at byte ``offset`` of the stream."""

    def __init__(self, offset: int, code: int) -> None:
        super().__init__(problem(code))
        self.offset = offset
        self.code = code


class SurrogateGuard:
    """``find_lone_surrogate`` over a body fed in chunks of any size, in constant memory.

    ``feed`` returns the bytes that may go on to the parser: everything up to the first lone surrogate
    escape (or, while the last few bytes cannot be judged yet, up to them); once one is found, the next
    ``feed`` (or ``end``) raises :class:`LoneSurrogate`, so the parser has read exactly what precedes
    the bad string.

        guard = SurrogateGuard()
        for chunk in chunks:
            parser.feed(guard.feed(chunk))     # raises LoneSurrogate
        while rest := guard.end():             # raises LoneSurrogate
            parser.feed(rest)
    """

    def __init__(self) -> None:
        self._held = b""  # the tail not handed on yet: it may start an escape or a pair
        self._held_at = 0  # its offset in the stream
        self._paired_low_at = -1  # stream offset of a low escape already paired with the high before it
        self._found: LoneSurrogate | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self._found is not None:
            raise self._found
        data = self._held + chunk
        if b"\\" not in data:  # the common case, at memchr speed
            self._held, self._held_at = b"", self._held_at + len(data)
            return data
        return self._split(data, final=False)

    def end(self) -> bytes:
        """What is still held once the body has ended (call again until it returns nothing: like
        ``feed``, it hands on what precedes a lone surrogate first, and raises on the next call)."""
        if self._found is not None:
            raise self._found
        rest = self._split(self._held, final=True)
        if not rest and self._found is not None:
            raise self._found
        return rest

    def _split(self, data: bytes, *, final: bool) -> bytes:
        base = self._held_at
        cut = len(data) if final else _even_cut(data, len(data) - _PAIR)
        paired = self._paired_low_at - base
        for offset, code, decided in _lone_escapes(data, paired):
            if offset >= cut or not (decided or final):
                break
            self._found = LoneSurrogate(base + offset, code)
            self._held, self._held_at = b"", base + offset
            return data[:offset]
        for match in _SURROGATE_ESCAPE.finditer(data, 0, cut + _PAIR):
            start, high = match.end() - 6, int(match.group(2), 16) < 0xDC00
            if start < cut and high and len(match.group(1)) % 2 == 1 and _LOW_ESCAPE.match(data, match.end()):
                self._paired_low_at = base + match.end()
        self._held, self._held_at = data[cut:], base + cut
        return data[:cut]


def _even_cut(data: bytes, cut: int) -> int:
    """``cut`` (at least 0), moved back so that the backslashes just before it are an even number: the
    bytes after it then start outside any escape, whatever they are."""
    if cut <= 0:
        return 0
    run = cut - len(data[:cut].rstrip(b"\\"))
    return cut - (run % 2)
