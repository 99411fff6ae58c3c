"""The request log's queries and the new Admin API tables on both databases (SQLite and PostgreSQL):
newest first, cursor pages that neither skip nor repeat a row (also among rows of one instant),
filters, lookup by request id inside the visible workspaces; service accounts, spend requests."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from tests.storage.test_repos import database_url  # noqa: F401  (the parametrized fixture)
from wisegate.records.principals import ServiceAccount, ServiceAccountMember, SpendLimitRequest
from wisegate.records.usage import UsageRecord
from wisegate.storage.db import Database, migrate
from wisegate.storage.principals import ServiceAccountRepo, SpendRequestRepo
from wisegate.storage.repos import UsageRepo
from wisegate.storage.request_log import LogQuery, RequestLogRepo

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _record(i: int, at: datetime, **values: object) -> UsageRecord:
    base = UsageRecord(
        request_id=f"req_{i:04d}",
        organization_id="org",
        workspace_id=f"ws_{i % 3}",
        api_key_id=f"key_{i % 4}",
        model="m-a" if i % 2 else "m-b",
        input_tokens=i,
        output_tokens=1,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=0,
        service_tier="standard",
        stop_reason=None if i % 5 == 0 else "end_turn",
        error_type="overloaded_error" if i % 5 == 0 else None,
        streamed=bool(i % 2),
        latency_ms=10,
        created_at=at,
        cost_picousd=1000 * i,
    )
    return replace(base, **values)  # type: ignore[arg-type]


def test_request_log_pages_and_filters(database_url: str) -> None:  # noqa: F811
    migrate(database_url)

    async def run() -> None:
        db = Database(database_url)
        try:
            # 30 records; 10 of them share one instant (the cursor's tie-break is the row id)
            records = [_record(i, T0 + timedelta(seconds=i if i >= 10 else 0)) for i in range(30)]
            records.append(_record(99, T0, organization_id="other"))
            await UsageRepo(db).add_many(records)
            log = RequestLogRepo(db)

            seen: list[str] = []
            query = LogQuery("org", limit=7)
            while True:
                page = await log.page(query)
                seen += [p.record.request_id for p in page]
                if len(page) < 7:
                    break
                last = page[-1]
                query = replace(query, before=(last.record.created_at, last.id))
            assert len(seen) == 30 and len(set(seen)) == 30  # every row once, none of the other org
            newest = [f"req_{i:04d}" for i in range(29, 9, -1)]
            assert seen[:20] == newest and set(seen[20:]) == {f"req_{i:04d}" for i in range(10)}

            ws = await log.page(LogQuery("org", workspace_ids=frozenset({"ws_1"}), limit=100))
            assert {p.record.workspace_id for p in ws} == {"ws_1"} and len(ws) == 10
            key = await log.page(LogQuery("org", api_key_id="key_3", limit=100))
            assert {p.record.request_id for p in key} == {f"req_{i:04d}" for i in range(3, 30, 4)}
            errors = await log.page(LogQuery("org", status="error", limit=100))
            assert {p.record.request_id for p in errors} == {f"req_{i:04d}" for i in range(0, 30, 5)}
            assert await log.page(LogQuery("org", status="rate_limit_error", limit=100)) == []
            ok = await log.page(LogQuery("org", status="ok", model="m-a", limit=100))
            assert all(p.record.error_type is None and p.record.model == "m-a" for p in ok) and len(ok) == 12
            recent = await log.page(LogQuery("org", since=T0 + timedelta(seconds=25), limit=100))
            assert [p.record.request_id for p in recent] == [f"req_{i:04d}" for i in range(29, 24, -1)]

            by_id = await log.page(LogQuery("org", request_id="req_0007", limit=1))
            assert [p.record.request_id for p in by_id] == ["req_0007"]
            hidden = await log.page(LogQuery("org", request_id="req_0007", workspace_ids=frozenset({"ws_0"})))
            assert hidden == []  # req_0007 is in ws_1
            assert await log.page(LogQuery("org", request_id="req_0099")) == []  # another organization's
            assert await log.cost_of_keys(["key_1", "key_2"], T0 + timedelta(seconds=20)) == 1000 * sum(
                i for i in range(20, 30) if i % 4 in (1, 2)
            )
        finally:
            await db.close()

    asyncio.run(run())


def test_service_account_and_spend_request_rows(database_url: str) -> None:  # noqa: F811
    migrate(database_url)

    async def run() -> None:
        db = Database(database_url)
        try:
            accounts = ServiceAccountRepo(db)
            account = ServiceAccount("svac_1", "org", "ci", "", "developer", T0, "apikey_a", T0, "apikey_a")
            await accounts.add(account)
            assert await accounts.get("svac_1") == account
            assert await accounts.by_name("org", "ci") == account
            archived = await accounts.update("svac_1", archived_at=T0, archived_by_actor_id="apikey_b")
            assert archived is not None and archived.archived_at == T0
            member = ServiceAccountMember("ws_1", "svac_1", "workspace_user", T0, None)
            assert await accounts.put_member(member) == member
            changed = await accounts.put_member(replace(member, workspace_role="workspace_admin"))
            assert changed.workspace_role == "workspace_admin" and changed.created_at == T0
            assert [m.workspace_role for m in await accounts.members(service_account_id="svac_1")] == [
                "workspace_admin"
            ]
            assert await accounts.remove_member("ws_1", "svac_1")
            assert not await accounts.remove_member("ws_1", "svac_1")

            requests = SpendRequestRepo(db)
            first = SpendLimitRequest("slir_1", "org", "ws_1", "user_1", 5, "why", "pending", T0)
            second = replace(first, id="slir_2", created_at=T0 + timedelta(seconds=1))
            await requests.add(first)
            await requests.add(second)
            assert [r.id for r in await requests.list_requests("org")] == ["slir_2", "slir_1"]
            done = await requests.resolve("slir_1", "approved", T0, "user", "user_2", 7)
            assert done is not None and done.status == "approved" and done.approved_pico == 7
            assert await requests.resolve("slir_1", "denied", T0, "user", "user_2") is None  # not pending
        finally:
            await db.close()

    asyncio.run(run())
