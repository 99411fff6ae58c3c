"""The SDK 2.10 ``client.organization`` resources beyond keys and people, against a live server: rate
limits (enforced), spend limits and increase requests (approval changes the limit), service accounts
and their keys, RBAC roles and groups (the role table), the unavailable features, and the audit record
of Admin API changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.api.admin_support import AdminServer, admin_server
from wisegate.domain.roles import ROLES
from wisegate.domain.scope import Scope


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    yield from admin_server(tmp_path_factory.mktemp("admin-organization"))


def _person(server: AdminServer, email: str, role: str, grants: list[tuple[str, str]] | None = None) -> str:
    """A user who accepted an invite (made on the server's own services); their id."""

    async def run() -> str:
        services = server.live.services
        scope = Scope(server.organization_id, None)
        invite = await services.people.create_invite(scope, email, role, grants or [])
        _, user = await services.people.accept_invite(scope, invite.id, email.split("@")[0])
        return user.id

    user_id: str = server.live.run(run())
    return user_id


def _message(client: anthropic.Anthropic) -> Any:
    return client.messages.create(
        model="scripted-1", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )


def test_rate_limits_listed_set_and_enforced(server: AdminServer) -> None:
    org = server.admin().organization
    entries = org.rate_limits.list().data
    assert [e.id for e in entries] == [
        "ratelimit_opus",
        "ratelimit_sonnet",
        "ratelimit_haiku",
        "ratelimit_other",
    ]
    other = entries[-1]
    assert other.type == "rate_limit" and other.group.type == "model_group" and other.group.id == "rlg_other"
    assert {"scripted-1", "scripted-latest", "scripted-2"} <= set(other.models or [])
    assert {v.type for v in other.limits} == {
        "requests_per_minute",
        "input_tokens_per_minute",
        "output_tokens_per_minute",
    }
    assert [e.id for e in org.rate_limits.list(model="scripted-latest").data] == ["ratelimit_other"]
    assert org.rate_limits.list(group_type="batch").data == []
    page = org.rate_limits.list(limit=3)
    assert len(page.data) == 3 and page.next_page is not None
    assert [e.id for e in page.get_next_page().data] == ["ratelimit_other"]
    with pytest.raises(anthropic.NotFoundError):
        org.rate_limits.list(model="no-such-model")

    ws = org.workspaces.create(name="Rated")
    assert org.workspaces.rate_limits.list(ws.id).data == []
    org_rpm = next(v.value for v in other.limits if v.type == "requests_per_minute")
    updated = org.workspaces.rate_limits.update(
        "ratelimit_other", workspace_id=ws.id, limits=[{"type": "requests_per_minute", "value": 1}]
    )
    assert updated.type == "workspace_rate_limit" and updated.rate_limit_id == "ratelimit_other"
    rpm = next(v for v in updated.limits if v.type == "requests_per_minute")
    assert rpm.value == 1 and rpm.org_limit == org_rpm and rpm.source.type == "workspace"
    inherited = next(v for v in updated.limits if v.type == "output_tokens_per_minute")
    assert inherited.source.type == "organization" and inherited.value == inherited.org_limit
    own = org.workspaces.rate_limits.list(ws.id).data
    assert [(e.rate_limit_id, [(v.type, v.value) for v in e.limits]) for e in own] == [
        ("ratelimit_other", [("requests_per_minute", 1)])
    ]
    assert len(org.workspaces.rate_limits.list(ws.id, include_inherited=True).data) == 4

    key_id, secret = server.new_key(ws.id)
    client = server.client(secret)
    _message(client)
    with pytest.raises(anthropic.RateLimitError):
        _message(client)  # the workspace's 1 request per minute, not the organization's
    # The Admin API takes admin keys only.
    with pytest.raises(anthropic.AuthenticationError):
        client.organization.workspaces.rate_limits.list(ws.id)
    with pytest.raises(anthropic.AuthenticationError):
        client.organization.workspaces.rate_limits.update(
            "ratelimit_other", workspace_id=ws.id, limits=[{"type": "requests_per_minute", "value": 100}]
        )

    with pytest.raises(anthropic.BadRequestError) as unknown:
        org.workspaces.rate_limits.update(
            "ratelimit_other", workspace_id=ws.id, limits=[{"type": "tokens_per_day", "value": 5}]
        )
    assert "tokens_per_day" in unknown.value.message
    with pytest.raises(anthropic.NotFoundError):
        org.workspaces.rate_limits.update(
            "ratelimit_nope", workspace_id=ws.id, limits=[{"type": "requests_per_minute", "value": 5}]
        )
    cleared = org.workspaces.rate_limits.update(
        "ratelimit_other", workspace_id=ws.id, limits=[{"type": "requests_per_minute", "value": None}]
    )
    assert all(v.source.type == "organization" for v in cleared.limits)
    assert org.workspaces.rate_limits.list(ws.id).data == []


def test_spend_limit_request_approved_changes_the_workspace_limit(server: AdminServer) -> None:
    org = server.admin().organization
    ws = org.workspaces.create(name="Spenders")
    asker = _person(server, "asker@example.com", "developer", [(ws.id, "workspace_developer")])
    spend = server.live.services.spend_limits

    async def ask(amount_pico: int | None, reason: str) -> str:
        view = await spend.ask(server.organization_id, asker, ws.id, amount_pico, reason)
        return view.request.id

    first = server.live.run(ask(300 * 10**12, "load test"))
    with pytest.raises(Exception, match="already asked"):
        server.live.run(ask(None, "again"))

    pending = org.spend_limits.increase_requests.list(status=["pending"]).data
    assert [r.id for r in pending] == [first]
    got = org.spend_limits.increase_requests.retrieve(first)
    assert got.type == "spend_limit_increase_request" and got.status == "pending" and got.period == "monthly"
    assert got.actor.type == "user_actor" and got.actor.user_id == asker
    assert got.actor.email_address == "asker@example.com"
    assert got.spend_summary is not None and got.spend_summary.scope.type == "workspace"
    assert got.spend_summary.amount is None and got.spend_summary.period_to_date_spend == "0"
    assert (got.model_extra or {}).get("requested_amount") == "30000"

    for meaningless in ("0", "000", "10000000001"):  # $0 would stop the workspace; past $1,000,000
        with pytest.raises(anthropic.BadRequestError, match="from 1 to 100000000 cents.*deny the request"):
            org.spend_limits.increase_requests.approve(first, amount=meaningless)
    assert org.spend_limits.increase_requests.retrieve(first).status == "pending"
    assert (
        server.live.run(server.live.services.limits.billing.workspace_limits(ws.id)).spend_limit_pico is None
    )
    approved = org.spend_limits.increase_requests.approve(first, amount="25000")
    assert approved.status == "approved" and approved.resolved_at is not None
    assert approved.resolved_by is not None and approved.resolved_by.type == "scoped_api_key_actor"
    assert approved.spend_limit is not None and approved.spend_limit.amount == "25000"
    assert approved.spend_limit.scope.type == "workspace"
    limits = server.live.run(server.live.services.limits.billing.workspace_limits(ws.id))
    assert limits.spend_limit_pico == 250 * 10**12
    with pytest.raises(anthropic.BadRequestError):
        org.spend_limits.increase_requests.deny(first)
    with pytest.raises(anthropic.BadRequestError):
        org.spend_limits.increase_requests.approve(first, amount="1")

    second = server.live.run(ask(None, "more"))
    with pytest.raises(anthropic.BadRequestError):
        org.spend_limits.increase_requests.approve(second, amount="100", period="daily")
    assert org.spend_limits.increase_requests.deny(second).status == "denied"
    assert org.spend_limits.increase_requests.deny(second).status == "denied"  # idempotent
    assert [r.id for r in org.spend_limits.increase_requests.list(actor_ids=[asker])] == [second, first]
    assert org.spend_limits.increase_requests.list(status=["pending"]).data == []
    with pytest.raises(anthropic.NotFoundError):
        org.spend_limits.increase_requests.retrieve("slir_nope")

    rows = org.spend_limits.effective.list(user_ids=[asker]).data
    assert len(rows) == 1 and rows[0].actor.user_id == asker and rows[0].period == "monthly"
    assert rows[0].scope.type in ("organization", "usage_tier") and rows[0].period_to_date_spend == "0"
    assert org.spend_limits.effective.list(period=["daily"]).data == []


def test_service_accounts_hold_keys_in_their_workspaces(server: AdminServer) -> None:
    org = server.admin().organization
    ws = org.workspaces.create(name="Robots")
    sa = org.service_accounts.create(name="ci-runner", description="CI")
    assert sa.id.startswith("svac_") and sa.organization_role == "developer" and sa.archived_at is None
    with pytest.raises(anthropic.BadRequestError):
        org.service_accounts.create(name="ci-runner")
    with pytest.raises(anthropic.BadRequestError):
        org.service_accounts.create(name="Not A Slug")
    assert org.service_accounts.retrieve(sa.id).description == "CI"
    assert org.service_accounts.update(sa.id, organization_role="admin").organization_role == "admin"
    assert sa.id in [a.id for a in org.service_accounts.list()]

    implicit = org.service_accounts.workspaces.list(sa.id).data
    assert len(implicit) == 1 and implicit[0].implicit and implicit[0].workspace_role == "workspace_user"
    with pytest.raises(anthropic.BadRequestError):  # not a member of Robots yet
        server.admin().post(
            "/v1/organizations/api_keys",
            cast_to=object,
            body={"name": "ci", "workspace_id": ws.id, "service_account_id": sa.id},
        )
    member = org.service_accounts.workspaces.add(
        sa.id, workspace_id=ws.id, workspace_role="workspace_developer"
    )
    assert (
        member.workspace_id == ws.id
        and member.workspace_role == "workspace_developer"
        and not member.implicit
    )
    assert [m.service_account_id for m in org.workspaces.service_accounts.list(ws.id)] == [sa.id]
    assert (
        org.workspaces.service_accounts.update(
            sa.id, workspace_id=ws.id, workspace_role="workspace_admin"
        ).workspace_role
        == "workspace_admin"
    )

    created: Any = server.admin().post(
        "/v1/organizations/api_keys",
        cast_to=object,
        body={"name": "ci", "workspace_id": ws.id, "service_account_id": sa.id},
    )
    assert created["principal"] == {"type": "service_account_actor", "service_account_id": sa.id}
    client = server.client(created["secret"])
    assert client.models.list().data  # the key works at once
    listed = org.api_keys.retrieve(created["id"])
    assert listed.principal is not None and listed.principal.type == "service_account_actor"

    removed = org.workspaces.service_accounts.remove(sa.id, workspace_id=ws.id)
    assert removed.type == "service_account_workspace_member_deleted"
    assert org.api_keys.retrieve(created["id"]).status == "archived"
    with pytest.raises(anthropic.AuthenticationError):
        client.models.list()
    org.workspaces.service_accounts.remove(sa.id, workspace_id=ws.id)  # idempotent

    archived = org.service_accounts.archive(sa.id)
    assert archived.archived_at is not None
    assert sa.id not in [a.id for a in org.service_accounts.list()]
    assert sa.id in [a.id for a in org.service_accounts.list(include_archived=True)]
    with pytest.raises(anthropic.BadRequestError):
        org.service_accounts.update(sa.id, description="x")
    with pytest.raises(anthropic.NotFoundError):
        org.service_accounts.retrieve("svac_nope")


def test_rbac_roles_and_groups_are_the_role_table(server: AdminServer) -> None:
    org = server.admin().organization
    roles = list(org.rbac_roles.list(limit=100))
    assert [r.id for r in roles] == list(ROLES)
    assert all(r.type == "rbac_role" and r.source.type == "built_in" for r in roles)
    permissions = {p.action for p in org.rbac_roles.permissions.list("workspace_developer")}
    assert permissions == {p.value for p in ROLES["workspace_developer"].permissions}
    with pytest.raises(anthropic.NotFoundError):
        org.rbac_roles.retrieve("owner")

    groups = {g.id: g for g in org.rbac_groups.list()}
    assert set(groups) == {
        f"rbacgrp_{r}" for r in ("user", "claude_code_user", "developer", "billing", "admin")
    }
    assert groups["rbacgrp_billing"].role_ids == ["billing"]
    someone = _person(server, "grouped@example.com", "user")
    assert someone in [m.user_id for m in org.rbac_groups.members.list("rbacgrp_user")]
    added = org.rbac_groups.members.add("rbacgrp_billing", user_id=someone)
    assert added.user_id == someone and added.email == "grouped@example.com"
    assert org.users.retrieve(someone).role == "billing"
    assert someone not in [m.user_id for m in org.rbac_groups.members.list("rbacgrp_user")]
    with pytest.raises(anthropic.BadRequestError):
        org.rbac_groups.members.remove(someone, rbac_group_id="rbacgrp_billing")
    with pytest.raises(anthropic.BadRequestError):
        org.rbac_groups.members.add("rbacgrp_admin", user_id=someone)
    with pytest.raises(anthropic.BadRequestError) as custom:
        org.rbac_groups.create(name="Platform")
    assert custom.value.error_code == "organization_type_not_supported"
    with pytest.raises(anthropic.NotFoundError):
        org.rbac_groups.retrieve("rbacgrp_owner")


def test_unavailable_features_and_the_audit_record(server: AdminServer) -> None:
    org = server.admin().organization
    calls = [
        lambda: org.analytics.users.list(date="2026-11-01"),
        lambda: org.compliance_settings.retrieve(),
        lambda: org.external_keys.list(),
        lambda: org.federation.issuers.list(),
        lambda: org.federation.rules.list(),
    ]
    for call in calls:
        with pytest.raises(anthropic.BadRequestError) as refused:
            call()
        assert refused.value.error_code == "organization_type_not_supported"
        assert "not available in Wisegate" in refused.value.message

    ws = org.workspaces.create(name="Audited")
    org.workspaces.update(ws.id, name="Audited 2")
    events = server.live.run(server.live.services.accounts.audit_log(server.organization_id))
    mine = [e for e in events if e.target and ws.id in e.target]
    assert [e.action for e in mine] == ["admin_api.update_workspace"]
    assert mine[0].actor_type == "admin_key" and mine[0].actor_id
    assert any(e.action == "admin_api.create_workspace" for e in events)
    assert not any(e.action.startswith("admin_api.list_") for e in events)  # reads are not recorded


def test_request_log_through_the_api(server: AdminServer) -> None:
    org = server.admin().organization
    ws = org.workspaces.create(name="Logged")
    key_id, secret = server.new_key(ws.id, name="logger")
    client = server.client(secret)
    made = [
        client.messages.with_raw_response.create(
            model="scripted-1", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        ).headers["request-id"]
        for _ in range(3)
    ]

    admin = server.admin()
    deadline = time.monotonic() + 10  # usage is settled just after each response is sent
    while len(server.get("/v1/organizations/request_log", workspace_id=ws.id).json()["data"]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    page: Any = admin.get(
        "/v1/organizations/request_log",
        cast_to=object,
        options={"params": {"workspace_id": ws.id, "limit": 2}},
    )
    assert [e["id"] for e in page["data"]] == made[::-1][:2]
    entry = page["data"][0]
    assert entry["type"] == "request_log_entry" and entry["api_key_id"] == key_id
    assert (
        entry["api_key_name"] == "logger" and entry["workspace_name"] == "Logged" and entry["status"] == "ok"
    )
    assert entry["model"] == "scripted-1" and entry["usage"]["output_tokens"] >= 0 and "content" not in entry
    rest: Any = admin.get(
        "/v1/organizations/request_log",
        cast_to=object,
        options={"params": {"workspace_id": ws.id, "limit": 2, "page": page["next_page"]}},
    )
    assert [e["id"] for e in rest["data"]] == [made[0]] and rest["next_page"] is None
    one: Any = admin.get(
        "/v1/organizations/request_log", cast_to=object, options={"params": {"request_id": made[1]}}
    )
    assert [e["id"] for e in one["data"]] == [made[1]]

    with pytest.raises(anthropic.AuthenticationError):  # the Admin API takes admin keys only
        client.get("/v1/organizations/request_log", cast_to=object)

    as_csv = server.get("/v1/organizations/request_log", workspace_id=ws.id, format="csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    lines = as_csv.text.strip().splitlines()
    assert lines[0].startswith("created_at,request_id,") and len(lines) == 4 and made[2] in lines[1]
    with pytest.raises(anthropic.BadRequestError):
        admin.get("/v1/organizations/request_log", cast_to=object, options={"params": {"page": "garbage!"}})
    with pytest.raises(anthropic.BadRequestError):
        admin.get("/v1/organizations/request_log", cast_to=object, options={"params": {"limit": 0}})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "bogus"}, "status: Input should be one of 'ok', 'error', 'invalid_request_error'"),
        ({"limit": "-5"}, "limit: Input should be between 1 and 1000, got -5"),
        ({"limit": "ten"}, "limit: Input should be a valid integer, got 'ten'"),
        ({"starting_at": "2025-13-01T00:00:00Z"}, "starting_at: '2025-13-01T00:00:00Z' is not an RFC 3339"),
        ({"ending_at": "yesterday"}, "ending_at: 'yesterday' is not an RFC 3339 datetime"),
        (
            {"starting_at": "2025-03-02T00:00:00Z", "ending_at": "2025-03-01T00:00:00Z"},
            "ending_at: must be after starting_at",
        ),
        ({"format": "xml"}, "format: Input should be 'json' or 'csv', got 'xml'"),
    ],
    ids=["status", "negative limit", "limit", "starting_at", "ending_at", "reversed range", "format"],
)
def test_request_log_query_values_are_checked(
    server: AdminServer, params: dict[str, str], message: str
) -> None:
    refused = server.get("/v1/organizations/request_log", **params)
    body = refused.json()
    assert refused.status_code == 400 and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(message), body["error"]["message"]


def test_request_log_status_takes_every_error_type(server: AdminServer) -> None:
    for status in ("ok", "error", "overloaded_error", "rate_limit_error", "client_disconnected"):
        answer = server.get("/v1/organizations/request_log", status=status, limit=1)
        assert answer.status_code == 200, (status, answer.text)
    listed = server.get("/v1/organizations/request_log", status="bogus").json()["error"]["message"]
    assert "'overloaded_error'" in listed and "'client_disconnected'" in listed
