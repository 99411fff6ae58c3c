"""Query parameters: the ``limit`` of the list endpoints (1–1000, default 20) and the typed parameters
of the Admin API, each refused in the Claude API's words."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from starlette.requests import Request

from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import echo
from wisegate.protocol.numbers import ascii_integer


def list_limit(request: Request, default: int = 20) -> int:
    limit = ascii_integer(request.query_params.get("limit", str(default)))
    if limit is None:
        raise InvalidRequest("limit: Input should be a valid integer")
    if not 1 <= limit <= 1000:
        raise InvalidRequest("limit: Input should be between 1 and 1000")
    return limit


def query_values(request: Request, name: str) -> list[str]:
    """An array query parameter, bracket style (``name[]=a&name[]=b``) or repeated (``name=a&name=b``)."""
    params = request.query_params
    return [v for v in params.getlist(f"{name}[]") + params.getlist(name) if v != ""]


def query_int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = ascii_integer(raw.removeprefix("-"))
    if value is None:
        raise InvalidRequest(f"{name}: Input should be a valid integer, got '{echo(raw)}'")
    if raw.startswith("-"):
        value = -value
    if not low <= value <= high:
        raise InvalidRequest(f"{name}: Input should be between {low} and {high}, got {value}")
    return value


def query_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"{name}: Input should be a valid boolean, got '{echo(raw)}'")
    return raw in ("true", "1")


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def query_datetime(request: Request, name: str, *, required: bool) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        if required:
            raise InvalidRequest(f"{name}: Field required")
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise InvalidRequest(f"{name}: '{echo(raw)}' is not an RFC 3339 datetime") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not _EARLIEST <= moment < _LATEST:
        # Buckets are counted forward from it: near year 9999 that arithmetic would overflow.
        raise InvalidRequest(
            f"{name}: '{echo(raw)}' is out of range; it must be from {_EARLIEST:%Y-%m-%d} up to "
            f"{_LATEST:%Y-%m-%d}"
        )
    return moment


def query_enum(request: Request, name: str, allowed: Sequence[str]) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise InvalidRequest(
            f"{name}: Input should be {', '.join(repr(a) for a in allowed)}, got '{echo(value)}'"
        )
    return value


def query_bool_default_true(request: Request, name: str) -> bool:
    return request.query_params.get(name, "true").lower() not in ("false", "0")
