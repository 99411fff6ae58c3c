"""The domain's check that a value a person typed fits where it is stored (``protocol/bounds.py``)."""

from __future__ import annotations

from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import name_problem, text_problem


def storable(field: str, value: str, max_length: int) -> str:
    """``value`` unchanged, or 400 ``"<field>: must not contain NUL …"`` / ``"… at most N characters"``."""
    problem = text_problem(value, max_length)
    if problem is not None:
        raise InvalidRequest(f"{field}: {problem}")
    return value


def storable_name(field: str, value: str, max_length: int) -> str:
    """``storable`` for a name people see: also no control characters (400 naming ``field``)."""
    problem = name_problem(value, max_length)
    if problem is not None:
        raise InvalidRequest(f"{field}: {problem}")
    return value
