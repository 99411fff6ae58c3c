"""The numbers and booleans of request bodies, as strict as the Claude API: ``true`` is not ``1``,
``"5"`` is not ``5``, ``"yes"`` is not ``true``.

Pydantic's default (lax) mode would take a boolean or a numeric string for an ``int`` or ``float``,
and ``"yes"``, ``"on"`` or ``1`` for a ``bool``; the API answers 400 instead. ``Integer`` is a JSON
integer that also fits the 32-bit range every count the API takes (tokens, budgets, ``top_k``) lives
in, so a huge value is a 400 naming the field rather than an overflow wherever it is multiplied or
stored.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Le
from pydantic import Strict

INT_MAX = 2**31 - 1

Integer = Annotated[int, Strict(), Le(INT_MAX)]
Number = Annotated[float, Strict()]
Boolean = Annotated[bool, Strict()]


def ascii_integer(text: str) -> int | None:
    """``text`` as a non-negative integer written in ASCII digits (``"42"``), else ``None``.

    ``str.isdigit`` and ``int`` also take other scripts' digits (``"³⁴"``, ``"٣"``): a header, a
    form field or a query parameter must not.
    """
    if not text or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def seconds(value: float) -> str:
    """``value`` seconds as a message says it: "1 second", "0.5 seconds", "30 seconds"."""
    return f"{value:g} second" + ("" if value == 1 else "s")
