"""The console's spend limit request flow over HTTP: a workspace developer asks in Account Settings,
billing sees it on Limits and approves, the workspace's limit changes and the developer sees the answer;
who may not approve is refused on the server. The Requests page (request log) and its CSV: each person
sees the requests of the workspaces whose usage they see, searchable by request id."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import closing

import anthropic
import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL, LiveServer, make_key, scripted_settings, serve
from tests.console.support import csrf_of, flash, join, login
from wisegate.backends.scripted import ScriptedBackend


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path_factory.mktemp("console-spend"))
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


@pytest.fixture(scope="module")
def team(server: LiveServer) -> str:
    with closing(login(server)) as admin:
        done = admin.post(
            "/console/workspaces",
            data={"csrf_token": csrf_of(admin.get("/console/workspaces").text), "name": "Team"},
        )
        match = re.search(r"Workspace “Team” created \((wrkspc_[^)]+)\)", flash(admin, done))
        assert match
        return match.group(1)


def _post(client: httpx.Client, page: str, action: str, data: dict[str, str]) -> httpx.Response:
    return client.post(action, data={"csrf_token": csrf_of(client.get(page).text), "back": page, **data})


def test_a_developer_asks_billing_approves_and_the_limit_changes(server: LiveServer, team: str) -> None:
    with (
        closing(join(server, "asks@example.com", "developer", [(team, "workspace_developer")])) as dev,
        closing(join(server, "pays@example.com", "billing")) as billing,
        closing(join(server, "other@example.com", "developer", [(team, "workspace_admin")])) as team_admin,
        closing(join(server, "nobody@example.com", "user")) as user,
    ):
        assert 'id="ask-spend-limit"' in dev.get("/console/account").text
        asked = _post(
            dev,
            "/console/account",
            "/console/account/spend-request",
            {"workspace_id": team, "usd": "250", "reason": "load test"},
        )
        assert "Asked for a higher spend limit" in flash(dev, asked)
        again = _post(
            dev,
            "/console/account",
            "/console/account/spend-request",
            {"workspace_id": team, "usd": "9", "reason": "x"},
        )
        assert "already asked" in flash(dev, again)
        # someone who does not work in the workspace cannot ask for it
        stranger = _post(
            user, "/console/account", "/console/account/spend-request", {"workspace_id": team, "reason": "x"}
        )
        assert "not found" in flash(user, stranger)

        limits = billing.get("/console/limits").text
        match = re.search(r'<tr data-request-id="(slir_[^"]+)">(.*?)</tr>', limits, re.S)
        assert match and "load test" in match.group(2) and "$250.00" in match.group(2)
        request_id = match.group(1)
        assert request_id in team_admin.get("/console/limits").text  # that workspace's admin sees it too
        # a developer of the workspace may not answer it
        refused = dev.post(
            f"/console/limits/requests/{request_id}/approve",
            data={"csrf_token": csrf_of(dev.get("/console/account").text), "usd": "1000"},
        )
        assert refused.status_code == 403

        approved = _post(
            billing, "/console/limits", f"/console/limits/requests/{request_id}/approve", {"usd": "200"}
        )
        assert "monthly spend limit is now $200.00" in flash(billing, approved)
        limit = server.run(server.services.limits.billing.workspace_limits(team))
        assert limit.spend_limit_pico == 200 * 10**12
        row = re.search(
            rf'data-request-id="{request_id}">.*?<td class="status">(.*?)</td>',
            dev.get("/console/account").text,
            re.S,
        )
        assert row and row.group(1).startswith("approved") and "$200.00" in row.group(1)
        assert request_id not in billing.get("/console/limits").text  # answered: no longer pending

        second = _post(
            dev,
            "/console/account",
            "/console/account/spend-request",
            {"workspace_id": team, "reason": "more"},
        )
        assert "Asked" in flash(dev, second)
        pending = re.search(r'<tr data-request-id="(slir_[^"]+)">', team_admin.get("/console/limits").text)
        assert pending
        denied = _post(team_admin, "/console/limits", f"/console/limits/requests/{pending.group(1)}/deny", {})
        assert flash(team_admin, denied) == "Request denied."
        assert (
            server.run(server.services.limits.billing.workspace_limits(team)).spend_limit_pico == 200 * 10**12
        )


def test_the_request_log_page_and_its_csv(server: LiveServer, team: str) -> None:
    team_key = make_key(server.settings, workspace=team)
    ids = []
    for secret in (server.key, team_key):
        client = anthropic.Anthropic(base_url=server.base_url, api_key=secret, max_retries=0)
        reply = client.messages.with_raw_response.create(
            model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
        ids.append(reply.headers["request-id"])
    default_id, team_id = ids

    def rows(client: httpx.Client, **params: str) -> list[str]:
        page = client.get("/console/requests", params=params)
        assert page.status_code == 200
        return re.findall(r'<tr data-request-id="([^"]+)">', page.text)

    with closing(login(server)) as admin:
        assert rows(admin)[:2] == [team_id, default_id]
        assert rows(admin, request_id=team_id) == [team_id]
        assert rows(admin, request_id="req_nope") == []
        assert "No requests match" in admin.get("/console/requests", params={"request_id": "req_nope"}).text
        assert rows(admin, workspace_id=team) == [team_id]
        assert rows(admin, status="error") == []
        download = admin.get("/console/requests.csv", params={"workspace_id": team})
        assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
        found = list(csv.DictReader(io.StringIO(download.text)))
        assert [r["request_id"] for r in found] == [team_id]
        assert found[0]["status"] == "ok" and found[0]["model"] == SCRIPTED_MODEL
        assert found[0]["workspace_name"] == "Team"

    # a developer of the default workspace only: its requests, not the team's — even by id
    with closing(join(server, "reader@example.com", "developer")) as dev:
        assert default_id in rows(dev) and team_id not in rows(dev)
        assert rows(dev, request_id=team_id) == []
        assert team_id not in dev.get("/console/requests.csv").text


def test_sub_cent_amounts_are_refused_alike_when_asking_and_approving(server: LiveServer, team: str) -> None:
    """Both forms take the same amounts (whole cents, more than $0, at most $1,000,000) and say so; the
    approve form offers exactly the amount asked for (not a float rounded to two decimals)."""
    accepted = "whole cents from $0.01 to $1,000,000"
    with (
        closing(join(server, "cents@example.com", "developer", [(team, "workspace_developer")])) as dev,
        closing(join(server, "cents-billing@example.com", "billing")) as billing,
    ):
        for amount in ("1500.005", "0", "1000000.01"):
            refused = _post(
                dev,
                "/console/account",
                "/console/account/spend-request",
                {"workspace_id": team, "usd": amount, "reason": "sub-cent"},
            )
            message = flash(dev, refused)
            assert message.startswith("Monthly limit asked for:") and accepted in message, message
        asked = _post(
            dev,
            "/console/account",
            "/console/account/spend-request",
            {"workspace_id": team, "usd": "1234.5", "reason": "sub-cent"},
        )
        assert "Asked for a higher spend limit" in flash(dev, asked)
        limits = billing.get("/console/limits").text
        row = re.search(
            r'<tr data-request-id="(slir_[^"]+)">(?:(?!</tr>).)*?sub-cent.*?name="usd"[^>]*value="([^"]*)"',
            limits,
            re.S,
        )
        assert row, limits
        request_id, offered = row.groups()
        assert offered == "1234.50"
        action = f"/console/limits/requests/{request_id}/approve"
        for amount in ("1500.005", "0"):
            message = flash(billing, _post(billing, "/console/limits", action, {"usd": amount}))
            assert message.startswith("Approved monthly limit:") and accepted in message, message
        assert request_id in billing.get("/console/limits").text  # refused: still pending
        approved = _post(billing, "/console/limits", action, {"usd": offered})
        assert "monthly spend limit is now $1234.500000" in flash(billing, approved)
