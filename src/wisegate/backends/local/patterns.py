"""JSON Schema ``pattern`` s rewritten into what llama.cpp's grammar converter can enforce.

A JSON Schema pattern searches the string (``"b"`` matches ``"abc"``); the converter only takes a
pattern for the whole string, written ``^…$``. :func:`whole_string` gives each end the pattern does not
anchor a ``.*``: ``b`` becomes ``^.*(b).*$``.

The grammar writes the string's JSON text, so every character a pattern lets the model write must be
one JSON holds unescaped: negated classes here, and ``.`` in ``grammar.py``, leave out ``"``, ``\\``
and control characters. ``\\d``, ``\\w`` and escaped punctuation become classes, the converter's
grammar having no such escapes. What cannot be enforced this way raises ``ValueError`` with a message
for the client (``grammar.py`` puts the field's path in front).
"""

from __future__ import annotations

import re

SUPPORTED = (
    "the embedded model supports literal characters, '.', classes [...] and [^...], groups (...), "
    "'|', the quantifiers *, +, ? and {m,n}, \\d, \\w and escaped punctuation, with ^ and $ only at "
    "the ends"
)
_BOUNDS = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_SHORTHANDS = {"d": "0-9", "w": "0-9A-Za-z_"}
# GBNF class text: what a negated class leaves out besides its own characters.
_NOT_IN_JSON = '"\\\\\\x00-\\x1F'


def whole_string(pattern: str) -> str:
    """``pattern`` as an anchored pattern for the whole string, in the converter's dialect."""
    start = pattern.startswith("^")
    body = pattern[1:] if start else pattern
    end = body.endswith("$") and not _escaped(body, len(body) - 1)
    if end:
        body = body[:-1]
    translated = _translate(body)
    if start and end:
        return f"^{translated}$"
    if not translated:
        return "^.*$"
    return "^" + ("" if start else ".*") + f"({translated})" + ("" if end else ".*") + "$"


def _escaped(text: str, index: int) -> bool:
    """Whether ``text[index]`` follows an odd number of backslashes."""
    count = 0
    while index > 0 and text[index - 1] == "\\":
        count += 1
        index -= 1
    return count % 2 == 1


def _translate(body: str) -> str:
    out: list[str] = []
    index, size = 0, len(body)
    # Per open group: whether it may match texts of varying length (?, *, +, {m,n}, {m,}, or |); and
    # that of the group closed just before, which a quantifier after it repeats.
    varies: list[bool] = [False]
    closed: bool | None = None
    while index < size:
        char = body[index]
        after_group, closed = closed, None
        if char == "\\":
            out.append(_escape(body[index + 1 : index + 2], in_class=False))
            index += 2
            continue
        if char == "[":
            index = _class(body, index, out)
            continue
        if char == "{":
            start = index
            index, low, high = _quantifier(body, index, out)
            if after_group and (high is None or max(low, high) > 1):
                raise ValueError(_NESTED_COUNT.format(body[start:index]))
            varies[-1] |= high != low
            continue
        if char == "(" and body[index + 1 : index + 2] == "?":
            raise ValueError(f"(?...) groups, lookarounds and flags are not supported; {SUPPORTED}")
        if char in "^$":
            raise ValueError(f"'{char}' is supported only at the pattern's start or end; {SUPPORTED}")
        if char == "(":
            varies.append(False)
        elif char == ")":
            if len(varies) == 1:
                raise ValueError("a ')' closes no group")
            closed = varies.pop()
            varies[-1] |= closed
        elif char in "*+?|":  # alternatives may differ in length or be empty: (a|) is a?
            varies[-1] = True
        # A lone ']' or '}' is a literal: the converter would loop forever on it.
        out.append(f"[\\x{ord(char):02X}]" if char in "]}" else _plain(char))
        index += 1
    if len(varies) > 1:
        raise ValueError("a '(' is not closed with ')'")
    return "".join(out)


# A counted repetition of a group that may match texts of different lengths: llama.cpp's grammar
# unrolls it into copies whose ways of splitting the text multiply. One token of ``(a{0,256}){0,256}``
# kept the model runner busy for minutes (``(a{0,16}){0,16}``: 20× a plain pattern per token), and so
# did ``((a|){256}){0,256}``, the same with an empty alternative; ``(a|aa){0,256}``: 7 s a token.
_NESTED_COUNT = (
    "the repetition {} counts a group that itself repeats something or has alternatives (?, *, +, "
    "{{m,n}} or |), which the embedded model's grammar cannot enforce at a bounded cost; repeat the "
    "group with * or + instead, or give what repeats inside it a fixed count {{k}}"
)


def _quantifier(body: str, index: int, out: list[str]) -> tuple[int, int, int | None]:
    """Check the ``{m}``, ``{m,}`` or ``{m,n}`` at ``body[index]``: the index after its ``}``, ``m``,
    and ``n`` (``m`` for ``{m}``, None for ``{m,}``)."""
    close = body.find("}", index)
    match = _BOUNDS.fullmatch(body[index : close + 1]) if close > 0 else None
    if match is None or not out:
        raise ValueError(f"'{{' starts no repetition {{m}}, {{m,}} or {{m,n}}; {SUPPORTED}")
    low = int(match.group(1))
    high = low if match.group(2) is None else int(match.group(2)) if match.group(2) else None
    if high is not None and high < low:
        raise ValueError(f"the repetition {match.group(0)} has its maximum below its minimum")
    out.append(match.group(0))
    return close + 1, low, high


def _class(body: str, index: int, out: list[str]) -> int:
    """Copy the class starting at ``body[index]`` (``[``) to ``out``; the index after its ``]``."""
    close = index + 1
    negated = body[close : close + 1] == "^"
    if negated:
        close += 1
    parts: list[str] = []
    while close < len(body) and body[close] != "]":
        if body[close] == "\\":
            parts.append(_escape(body[close + 1 : close + 2], in_class=True))
            close += 2
        else:
            parts.append(_plain(body[close]))
            close += 1
    if close >= len(body):
        raise ValueError(f"a character class is not closed with ']'; {SUPPORTED}")
    inner = "".join(parts)
    if not inner:
        raise ValueError("an empty character class [] matches nothing")
    out.append(f"[^{inner}{_NOT_IN_JSON}]" if negated else f"[{inner}]")
    return close + 1


def _escape(char: str, *, in_class: bool) -> str:
    if char in _SHORTHANDS:
        return _SHORTHANDS[char] if in_class else f"[{_SHORTHANDS[char]}]"
    if char and char.isascii() and not char.isalnum() and char not in '"\\' and char.isprintable():
        code = f"\\x{ord(char):02X}"
        return code if in_class else f"[{code}]"
    if char in ('"', "\\"):
        raise ValueError(f"a pattern cannot require '{char}' in the string; {SUPPORTED}")
    raise ValueError(f"the escape \\{char} is not supported; {SUPPORTED}")


def _plain(char: str) -> str:
    if char == '"' or not char.isprintable():
        raise ValueError(f"a pattern cannot require {char!r} in the string; {SUPPORTED}")
    return char
