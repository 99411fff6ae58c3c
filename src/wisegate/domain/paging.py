"""``before_id`` / ``after_id`` / ``limit`` paging over an ordered list (the SyncPage envelope)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import echo

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


def paginate(
    items: Sequence[T],
    id_of: Callable[[T], str],
    *,
    limit: int,
    before_id: str | None = None,
    after_id: str | None = None,
) -> Page[T]:
    """The page of ``items`` right after ``after_id``, right before ``before_id``, or the first one."""
    if before_id and after_id:
        raise InvalidRequest("before_id and after_id cannot both be set")
    ids = [id_of(item) for item in items]
    if after_id:
        if after_id not in ids:
            raise InvalidRequest(f"after_id: no object with id '{echo(after_id)}'")
        start = ids.index(after_id) + 1
        return Page(list(items[start : start + limit]), start + limit < len(items))
    if before_id:
        if before_id not in ids:
            raise InvalidRequest(f"before_id: no object with id '{echo(before_id)}'")
        end = ids.index(before_id)
        return Page(list(items[max(0, end - limit) : end]), end - limit > 0)
    return Page(list(items[:limit]), limit < len(items))
