"""The request log: recent requests a viewer may see — time, request id, workspace, key, model, status
or error type, stop reason, tokens, cost, latency, streamed or batch — newest first, by cursor.

Wisegate stores no prompt or completion bodies, so there are none to show. The console's Requests page,
its CSV download and ``GET /v1/organizations/request_log`` (a Wisegate extension) all read it here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from wisegate.domain.scope import Scope
from wisegate.errors import ERROR_TYPES, InvalidRequest
from wisegate.protocol import cursors
from wisegate.protocol.bounds import echo
from wisegate.records.usage import UsageRecord
from wisegate.storage.request_log import LogQuery, RequestLogRepo

MAX_PAGE = 1000
# What ``status`` filters by: every request, those that failed, or those that failed with one error type
# (a client that left before the end is ``client_disconnected``).
STATUSES = ("ok", "error", *ERROR_TYPES, "client_disconnected")
CSV_COLUMNS = (
    "created_at",
    "request_id",
    "workspace_id",
    "workspace_name",
    "api_key_id",
    "api_key_name",
    "api_key_hint",
    "model",
    "status",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cost_usd",
    "latency_ms",
    "streamed",
    "batch",
)


@dataclass(frozen=True, slots=True)
class LogEntry:
    record: UsageRecord
    workspace_name: str | None
    key_name: str | None
    key_hint: str | None

    @property
    def status(self) -> str:
        return self.record.error_type or "ok"

    @property
    def cost_usd(self) -> str:
        return format(self.record.cost_picousd / 10**12, ".6f")

    def row(self) -> list[str]:
        """The CSV row, in :data:`CSV_COLUMNS` order."""
        r = self.record
        return [
            r.created_at.isoformat(),
            r.request_id,
            r.workspace_id,
            self.workspace_name or "",
            r.api_key_id,
            self.key_name or "",
            self.key_hint or "",
            r.model,
            self.status,
            r.stop_reason or "",
            str(r.input_tokens),
            str(r.output_tokens),
            str(r.cache_creation_input_tokens),
            str(r.cache_read_input_tokens),
            self.cost_usd,
            str(r.latency_ms),
            "true" if r.streamed else "false",
            "true" if r.batch else "false",
        ]


@dataclass(frozen=True, slots=True)
class LogPage:
    entries: list[LogEntry]
    next_page: str | None


def _cursor(at: datetime, row_id: int) -> str:
    return cursors.encode(f"{at.isoformat()}|{row_id}")


def _parse_cursor(token: str) -> tuple[datetime, int]:
    at, _, row_id = (cursors.decode(token) or "").partition("|")
    moment, number = cursors.moment(at), cursors.integer(row_id)
    if moment is None or number is None:
        raise InvalidRequest(cursors.problem("page", token, "the request log"))
    return moment, number


class RequestLogService:
    def __init__(self, repo: RequestLogRepo, settled: Callable[[], Awaitable[None]] | None = None) -> None:
        self._repo = repo
        self._settled = settled  # this process's journaled settlements, committed before a read

    async def page(
        self,
        scope: Scope,
        query: LogQuery,
        *,
        workspaces: Iterable[str] | None = None,
        page: str | None = None,
    ) -> LogPage:
        """One page of ``query`` in ``scope`` (an API key: its workspace; ``workspaces``: only these,
        for a console viewer); ``page``: the previous page's ``next_page``."""
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidRequest(f"limit: Input should be between 1 and {MAX_PAGE}, got {query.limit}")
        if self._settled is not None:
            await self._settled()
        visible = None if workspaces is None else frozenset(workspaces)
        if scope.workspace_id is not None:
            visible = frozenset({scope.workspace_id}) & (
                visible if visible is not None else {scope.workspace_id}
            )
        if query.workspace_ids is not None:
            visible = query.workspace_ids if visible is None else query.workspace_ids & visible
        query = replace(
            query,
            organization_id=scope.organization_id,
            workspace_ids=visible,
            before=_parse_cursor(page) if page else None,
            limit=query.limit + 1,
        )
        found = await self._repo.page(query)
        more = len(found) > query.limit - 1
        found = found[: query.limit - 1]
        entries = [LogEntry(f.record, f.workspace_name, f.key_name, f.key_hint) for f in found]
        last = found[-1] if found else None
        return LogPage(entries, _cursor(last.record.created_at, last.id) if more and last else None)


def query_of(params: Mapping[str, str], organization_id: str, limit: int) -> LogQuery:
    """The filters of a request log query string (shared with the console's page and CSV); 400 for a
    ``status`` that is none of :data:`STATUSES`."""
    workspace = params.get("workspace_id") or None
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidRequest(
            f"status: Input should be one of {', '.join(repr(s) for s in STATUSES)}, got '{echo(status)}'"
        )
    return LogQuery(
        organization_id,
        workspace_ids=frozenset({workspace}) if workspace else None,
        api_key_id=params.get("api_key_id") or None,
        model=params.get("model") or None,
        status=status,
        request_id=(params.get("request_id") or "").strip() or None,
        limit=limit,
    )


def csv_of(page: LogPage) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in page.entries:
        writer.writerow([inert_cell(cell) for cell in entry.row()])
    return out.getvalue()


def inert_cell(cell: object) -> object:
    """A text cell a spreadsheet would read as a formula (``=``, ``+``, ``-``, ``@``, tab, CR) gets a
    leading ``'`` (OWASP's CSV injection advice); numbers stay numbers."""
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + cell
    return cell
