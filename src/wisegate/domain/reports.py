"""The usage report (``/v1/organizations/usage_report/messages``) and the cost report
(``/v1/organizations/cost_report``), rolled up from the per-request usage records.

Buckets are snapped to UTC minute/hour/day starts and every bucket of the page is returned (with
``results: []`` when nothing happened). Pages are opaque ``page_…`` tokens naming the next bucket; the
client sends the same query again with ``page``. Costs are exact: token sums × the price table's
integer picodollars (halved for ``batch``), rendered as decimal strings in cents.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from wisegate.domain.pricing import Price, PriceTable
from wisegate.domain.scope import Scope
from wisegate.errors import InvalidRequest
from wisegate.protocol import cursors
from wisegate.protocol.admin import (
    CacheCreation,
    CostBucket,
    CostReport,
    CostResult,
    ServerToolUse,
    UsageBucket,
    UsageReport,
    UsageResult,
)
from wisegate.protocol.bounds import echo
from wisegate.protocol.resources import rfc3339
from wisegate.records.usage import UsageFilter, UsageSum
from wisegate.storage.reports import UsageReportRepo

# bucket width -> (length, default page size, largest page size)
BUCKETS = {
    "1m": (timedelta(minutes=1), 60, 1440),
    "1h": (timedelta(hours=1), 24, 168),
    "1d": (timedelta(days=1), 7, 31),
}
USAGE_GROUPS = (
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "speed",
    "account_id",
    "service_account_id",
)
COST_GROUPS = ("workspace_id", "description")
SERVICE_TIERS = ("standard", "batch", "priority", "priority_on_demand", "flex", "flex_discount")
CONTEXT_WINDOWS = ("0-200k", "200k-1M")
TOKEN_TYPES = (
    ("uncached_input_tokens", "Input Tokens"),
    ("output_tokens", "Output Tokens"),
    ("cache_read_input_tokens", "Cache Read Input Tokens"),
    ("cache_creation.ephemeral_5m_input_tokens", "Cache Write (5m) Input Tokens"),
)
_PICO_PER_CENT = Decimal(10) ** 10
CODE_EXECUTION = "code_execution"


def _cost_type(line_type: str | None) -> str:
    return CODE_EXECUTION if line_type == CODE_EXECUTION else "tokens"


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """A report request, already split into typed values (``api/admin.py`` parses the query string)."""

    starting_at: datetime
    ending_at: datetime | None = None
    bucket_width: str = "1d"
    limit: int | None = None
    page: str | None = None
    group_by: Sequence[str] = ()
    api_key_ids: Sequence[str] = ()
    workspace_ids: Sequence[str] = ()
    models: Sequence[str] = ()
    service_tiers: Sequence[str] = ()
    context_windows: Sequence[str] = ()
    inference_geos: Sequence[str] = ()
    speeds: Sequence[str] = ()
    account_ids: Sequence[str] = ()
    service_account_ids: Sequence[str] = ()


# (bucket, workspace, model, tier, context window, token type, label); None where not grouped
_CostKey = tuple[int, str | None, str | None, str | None, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class _Window:
    buckets: list[tuple[datetime, datetime]]
    next_page: str | None


def _floor(moment: datetime, width: str) -> datetime:
    moment = moment.astimezone(UTC)
    if width == "1m":
        return moment.replace(second=0, microsecond=0)
    if width == "1h":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _ceil(moment: datetime, width: str) -> datetime:
    floor = _floor(moment, width)
    return floor if floor == moment else floor + BUCKETS[width][0]


def encode_page(moment: datetime) -> str:
    return cursors.encode(rfc3339(moment, whole_seconds=True), prefix="page_")


def decode_page(token: str) -> datetime:
    text = cursors.decode(token, prefix="page_")
    try:
        return datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(cursors.problem("page", token, "this report")) from None


def _window(query: ReportQuery, now: datetime) -> _Window:
    length, default_limit, max_limit = BUCKETS[query.bucket_width]
    limit = default_limit if query.limit is None else query.limit
    if not 1 <= limit <= max_limit:
        raise InvalidRequest(
            f"limit: must be between 1 and {max_limit} for bucket_width {query.bucket_width}, got {limit}"
        )
    start = _floor(query.starting_at, query.bucket_width)
    if query.ending_at is not None:
        if query.ending_at <= query.starting_at:
            raise InvalidRequest("ending_at: must be after starting_at")
        end = _ceil(query.ending_at, query.bucket_width)
    else:
        end = max(_ceil(now, query.bucket_width), start + length)
    cursor = start
    if query.page:
        cursor = decode_page(query.page)
        if cursor < start or cursor >= end or (cursor - start) % length:
            raise InvalidRequest(f"page: '{echo(query.page)}' does not belong to this query's time range")
    buckets: list[tuple[datetime, datetime]] = []
    while cursor < end and len(buckets) < limit:
        buckets.append((cursor, cursor + length))
        cursor += length
    return _Window(buckets, encode_page(cursor) if cursor < end else None)


def _context_window(row: UsageSum) -> str:
    return "200k-1M" if row.long_context else "0-200k"


def _dimensions(row: UsageSum) -> dict[str, str | None]:
    return {
        "api_key_id": row.api_key_id,
        "workspace_id": row.workspace_id,
        "model": row.model,
        "service_tier": row.service_tier,
        "context_window": _context_window(row),
        "inference_geo": "not_available",
        "speed": "standard",
        "account_id": None,
        "service_account_id": None,
    }


def _matches(row: UsageSum, query: ReportQuery) -> bool:
    """The filters the database does not apply (derived dimensions)."""
    dims = _dimensions(row)
    for name, wanted in (
        ("context_window", query.context_windows),
        ("inference_geo", query.inference_geos),
        ("speed", query.speeds),
        ("account_id", query.account_ids),
        ("service_account_id", query.service_account_ids),
    ):
        if wanted and dims[name] not in wanted:
            return False
    return True


def _check_values(name: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    for value in values:
        if value not in allowed:
            raise InvalidRequest(f"{name}: '{echo(value)}' is not one of {', '.join(allowed)}")


@dataclass
class _Sums:
    uncached: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    code_execution_requests: int = 0
    container_ms: int = 0

    def add(self, row: UsageSum) -> None:
        self.code_execution_requests += row.code_execution_requests
        self.container_ms += row.container_ms
        self.uncached += row.input_tokens
        self.output += row.output_tokens
        self.cache_read += row.cache_read_input_tokens
        self.cache_write += row.cache_creation_input_tokens


class ReportService:
    def __init__(
        self,
        repo: UsageReportRepo,
        prices: PriceTable,
        display_name: Callable[[str], str] = lambda model: model,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        settled: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._repo = repo
        self._settled = settled  # waits for this process's settlements to be committed
        self._prices = prices
        self._display_name = display_name
        self._clock = clock
        self._price_of: dict[str, Price] = {}  # glob lookups are slow; prices do not change at run time

    def _filter(self, scope: Scope, query: ReportQuery, start: datetime, end: datetime) -> UsageFilter | None:
        workspace_ids = list(query.workspace_ids)
        if scope.workspace_id is not None:  # an API key sees its own workspace only
            workspace_ids = [w for w in workspace_ids if w == scope.workspace_id] if workspace_ids else []
            if query.workspace_ids and not workspace_ids:
                return None
            workspace_ids = workspace_ids or [scope.workspace_id]
        return UsageFilter(
            organization_id=scope.organization_id,
            starting_at=start,
            ending_at=end,
            workspace_ids=workspace_ids,
            api_key_ids=list(query.api_key_ids),
            models=list(query.models),
            service_tiers=list(query.service_tiers),
        )

    async def _sums(self, where: UsageFilter) -> list[UsageSum]:
        if self._settled is not None:
            await self._settled()
        return await self._repo.sums(where)

    async def _rows(self, scope: Scope, query: ReportQuery, window: _Window) -> list[UsageSum]:
        if not window.buckets:
            return []
        where = self._filter(scope, query, window.buckets[0][0], window.buckets[-1][1])
        if where is None:
            return []
        return [row for row in await self._sums(where) if _matches(row, query)]

    async def usage(self, scope: Scope, query: ReportQuery) -> UsageReport:
        """Token sums per bucket, broken out by ``query.group_by``."""
        _check_values("bucket_width", [query.bucket_width], tuple(BUCKETS))
        _check_values("group_by", query.group_by, USAGE_GROUPS)
        _check_values("service_tiers", query.service_tiers, SERVICE_TIERS)
        _check_values("context_window", query.context_windows, CONTEXT_WINDOWS)
        _check_values("inference_geos", query.inference_geos, ("global", "us", "not_available"))
        _check_values("speeds", query.speeds, ("standard", "fast"))
        window = _window(query, self._clock())
        rows = await self._rows(scope, query, window)
        group_by = list(dict.fromkeys(query.group_by))
        sums: dict[tuple[int, tuple[str | None, ...]], _Sums] = {}
        index = {start: i for i, (start, _) in enumerate(window.buckets)}
        width = query.bucket_width
        for row in rows:
            dims = _dimensions(row)
            key = (index[_floor(row.minute, width)], tuple(dims[g] for g in group_by))
            sums.setdefault(key, _Sums()).add(row)
        data = []
        for i, (start, end) in enumerate(window.buckets):
            results = []
            for (bucket, group), s in sorted(sums.items(), key=lambda item: [str(v) for v in item[0][1]]):
                if bucket != i:
                    continue
                result = UsageResult(
                    uncached_input_tokens=s.uncached,
                    cache_creation=CacheCreation(ephemeral_5m_input_tokens=s.cache_write),
                    cache_read_input_tokens=s.cache_read,
                    output_tokens=s.output,
                    server_tool_use=ServerToolUse(
                        code_execution_requests=s.code_execution_requests,
                        code_execution_seconds=s.container_ms / 1000,
                    ),
                )
                results.append(result.model_copy(update=dict(zip(group_by, group, strict=True))))
            data.append(
                UsageBucket(
                    starting_at=rfc3339(start, whole_seconds=True),
                    ending_at=rfc3339(end, whole_seconds=True),
                    results=results,
                )
            )
        return UsageReport(data=data, has_more=window.next_page is not None, next_page=window.next_page)

    async def summary(
        self, scope: Scope, starting_at: datetime, ending_at: datetime, group_by: Sequence[str]
    ) -> list[SummaryRow]:
        """Token and cost totals per group over ``[starting_at, ending_at)``, costliest first."""
        _check_values("group_by", group_by, USAGE_GROUPS)
        if ending_at <= starting_at:
            raise InvalidRequest("ending_at: must be after starting_at")
        where = self._filter(scope, ReportQuery(starting_at=starting_at), starting_at, ending_at)
        totals: dict[tuple[str | None, ...], list[int]] = {}
        if where is not None:
            for row in await self._sums(where):
                dims = _dimensions(row)
                t = totals.setdefault(tuple(dims[g] for g in group_by), [0] * 6)
                t[0] += row.requests
                t[1] += row.input_tokens
                t[2] += row.output_tokens
                t[3] += row.cache_creation_input_tokens
                t[4] += row.cache_read_input_tokens
                t[5] += sum(doubled for _, _, doubled in self._line_costs(row))
        rows = [
            SummaryRow(dict(zip(group_by, group, strict=True)), t[0], t[1], t[2], t[3], t[4], t[5] // 2)
            for group, t in totals.items()
        ]
        return sorted(
            rows, key=lambda r: (-r.cost_picodollars, -r.requests, [str(v) for v in r.group.values()])
        )

    def _line_costs(self, row: UsageSum) -> list[tuple[str, str, int]]:
        """(token type, label, doubled picodollars) per token kind; doubling keeps batch halves exact."""
        price = self._price_of.get(row.model)
        if price is None:
            price = self._price_of[row.model] = self._prices.price(row.model)
        factor = 1 if row.service_tier == "batch" else 2
        counts = (
            (row.input_tokens, price.input),
            (row.output_tokens, price.output),
            (row.cache_read_input_tokens, price.cache_read),
            (row.cache_creation_input_tokens, price.cache_write_5m),
        )
        lines = [
            (token_type, label, tokens * per_token * factor)
            for (token_type, label), (tokens, per_token) in zip(TOKEN_TYPES, counts, strict=True)
            if tokens
        ]
        if row.container_ms:  # container time is not halved for batches
            lines.append(
                (CODE_EXECUTION, "Code Execution", 2 * self._prices.container_cost(row.container_ms))
            )
        return lines

    async def cost(self, scope: Scope, query: ReportQuery) -> CostReport:
        """Costs per day in cents (decimal strings), by workspace and/or line item (``description``)."""
        _check_values("bucket_width", [query.bucket_width], ("1d",))
        _check_values("group_by", query.group_by, COST_GROUPS)
        window = _window(query, self._clock())
        rows = await self._rows(scope, query, window)
        by_workspace = "workspace_id" in query.group_by
        by_description = "description" in query.group_by
        index = {start: i for i, (start, _) in enumerate(window.buckets)}
        totals: dict[_CostKey, int] = {}
        for row in rows:
            bucket = index[_floor(row.minute, "1d")]
            workspace = row.workspace_id if by_workspace else None
            lines = self._line_costs(row) or [("uncached_input_tokens", "Input Tokens", 0)]
            for token_type, label, doubled in lines:
                key: _CostKey
                if by_description:
                    key = (
                        bucket,
                        workspace,
                        row.model,
                        row.service_tier,
                        _context_window(row),
                        token_type,
                        label,
                    )
                else:
                    key = (bucket, workspace, None, None, None, None, None)
                totals[key] = totals.get(key, 0) + doubled
        data = []
        for i, (start, end) in enumerate(window.buckets):
            results = []
            for line, doubled in sorted(totals.items(), key=lambda item: [str(v) for v in item[0][1:]]):
                if line[0] != i:
                    continue
                _, line_workspace, model, tier, context, line_type, line_label = line
                description = None
                if model is not None:
                    batch = " (Batch)" if tier == "batch" else ""
                    description = f"{self._display_name(model)} Usage - {line_label}{batch}"
                results.append(
                    CostResult(
                        amount=cents(doubled),
                        workspace_id=line_workspace,
                        description=description,
                        cost_type=_cost_type(line_type) if by_description else None,
                        context_window=context,
                        model=model,
                        service_tier=tier,
                        token_type=None if line_type == CODE_EXECUTION else line_type,
                    )
                )
            data.append(
                CostBucket(
                    starting_at=rfc3339(start, whole_seconds=True),
                    ending_at=rfc3339(end, whole_seconds=True),
                    results=results,
                )
            )
        return CostReport(data=data, has_more=window.next_page is not None, next_page=window.next_page)


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """Totals of one group over a whole time range (``wisegate usage``)."""

    group: dict[str, str | None]
    requests: int
    uncached_input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_picodollars: int


def cents(doubled_picodollars: int) -> str:
    """Exact cents as a plain decimal string, from twice the picodollar amount."""
    value = (Decimal(doubled_picodollars) / 2 / _PICO_PER_CENT).normalize()
    text = format(value, "f")
    return "0" if value == 0 else text
