"""``wisegate workspaces …`` and ``wisegate usage`` against a real database (click's CliRunner)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from wisegate.cli import main
from wisegate.domain.keys import KeyService
from wisegate.records.usage import UsageRecord
from wisegate.settings import Settings
from wisegate.storage.db import Database
from wisegate.storage.repos import TenancyRepo, UsageRepo


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("WISEGATE_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def _ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_workspaces_commands(runner: CliRunner) -> None:
    created = _ok(runner, "workspaces", "create", "--name", "Team", "--model", "smollm2-135m-instruct")
    workspace_id, name = created.strip().split("\t")
    assert workspace_id.startswith("wrkspc_") and name == "Team"
    listed = _ok(runner, "workspaces", "list").splitlines()
    assert f"{workspace_id}\tTeam\tactive\tsmollm2-135m-instruct" in listed
    assert any(line.endswith("\tDefault\tdefault\t*") for line in listed)
    assert _ok(runner, "workspaces", "models", workspace_id).strip() == f"{workspace_id}\t*"
    key_line = _ok(runner, "keys", "create", "--name", "k", "--workspace", workspace_id)
    key_id = key_line.split("\t")[0]
    assert _ok(runner, "workspaces", "archive", workspace_id).strip() == f"{workspace_id}\tarchived"
    assert workspace_id not in _ok(runner, "workspaces", "list")
    assert f"{workspace_id}\tTeam\tarchived\t*" in _ok(runner, "workspaces", "list", "--archived")
    assert f"{key_id}\t{workspace_id}\tapi\tarchived" in _ok(runner, "keys", "list")

    bad = runner.invoke(main, ["workspaces", "create", "--name", "x", "--model", "nope"])
    assert bad.exit_code == 1 and "allowed_models: unknown model 'nope'" in bad.output
    for name, why in (
        ("x" * 41, "at most 40 characters"),
        ("\u202egpj.exe", "bidirectional"),
        ("  ", "empty"),
    ):
        refused = runner.invoke(main, ["workspaces", "create", "--name", name])  # as the Admin API refuses it
        assert refused.exit_code == 1 and "name: must" in refused.output and why in refused.output, (
            refused.output
        )
    assert _ok(runner, "workspaces", "create", "--name", "x" * 40).strip().endswith("x" * 40)
    missing = runner.invoke(main, ["workspaces", "archive", "wrkspc_nope"])
    assert missing.exit_code == 1 and "not found" in missing.output


def _seed_usage() -> None:
    settings = Settings()

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            keys = KeyService(TenancyRepo(db))
            org = await keys.bootstrap()
            workspace = await keys.default_workspace(org.id)
            key, _ = await keys.create_key(workspace.id, "seed")
            now = datetime.now(UTC) - timedelta(hours=1)
            for i, (model, tokens) in enumerate(
                [("claude-sonnet-4-5", 1_000_000), ("smollm2-135m-instruct", 50)]
            ):
                await UsageRepo(db).add(
                    UsageRecord(
                        f"req_seed_{i}",
                        org.id,
                        workspace.id,
                        key.id,
                        model,
                        tokens,
                        tokens,
                        0,
                        0,
                        "standard",
                        "end_turn",
                        None,
                        False,
                        5,
                        now,
                    )
                )
        finally:
            await db.close()

    asyncio.run(run())


def test_usage_table(runner: CliRunner) -> None:
    _ok(runner, "migrate")
    _seed_usage()
    table = _ok(runner, "usage")
    lines = [line for line in table.splitlines() if "claude-sonnet-4-5" in line or "smollm2" in line]
    # Sorted by cost: 1M in at $3 + 1M out at $15 = $18; the embedded model is free.
    assert "claude-sonnet-4-5" in lines[0] and "1,000,000" in lines[0] and "$18.000000" in lines[0]
    assert "smollm2-135m-instruct" in lines[1] and "$0.000000" in lines[1]
    by_workspace = _ok(runner, "usage", "--by", "workspace", "--days", "1")
    assert "wrkspc_" in by_workspace and "$18.000000" in by_workspace
    empty = _ok(runner, "usage", "--start", "2020-01-01", "--end", "2020-01-02")
    assert "no requests in this range" in empty
    assert runner.invoke(main, ["usage", "--start", "soon"]).exit_code == 2


def test_invites_create_prints_a_link_that_works_once(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WISEGATE_CONSOLE_PUBLIC_URL", "https://gate.example.com/")
    workspace_id = _ok(runner, "workspaces", "create", "--name", "Team").split("\t")[0]
    out = _ok(
        runner,
        "invites",
        "create",
        "--email",
        "Ada@Example.com",
        "--role",
        "developer",
        "--workspace",
        workspace_id,
        "--workspace-role",
        "workspace_admin",
    ).splitlines()
    invite_id, email, role, expires = out[0].split("\t")
    assert invite_id.startswith("invite_") and email == "ada@example.com" and role == "developer"
    link = out[1]
    assert link.startswith("https://gate.example.com/console/invite/") and len(link.rsplit("/", 1)[1]) == 64
    again = runner.invoke(main, ["invites", "create", "--email", "ada@example.com"])
    assert again.exit_code == 1 and "A pending invite already exists" in again.output
    missing = runner.invoke(
        main, ["invites", "create", "--email", "b@example.com", "--workspace", "wrkspc_nope"]
    )
    assert missing.exit_code == 1 and "workspace wrkspc_nope not found" in missing.output
    bad = runner.invoke(main, ["invites", "create", "--email", "c@example.com", "--role", "admin"])
    assert bad.exit_code == 2 and "admin" in bad.output

    async def accept() -> tuple[str, tuple[str, ...]]:
        from wisegate.domain.accounts import Client
        from wisegate.services import Services

        services = Services.from_settings(Settings())
        try:
            _, viewer = await services.accounts.accept_invite(
                link.rsplit("/", 1)[1], "Ada", "a long password", Client("127.0.0.1", "cli test")
            )
            return viewer.user.role if viewer.user else "", viewer.access.workspace_roles[workspace_id]
        finally:
            await services.db.close()

    assert asyncio.run(accept()) == ("developer", ("workspace_admin",))


def test_service_accounts_and_spend_requests_commands(runner: CliRunner) -> None:
    from wisegate.domain.scope import Scope
    from wisegate.services import Services

    workspace_id = _ok(runner, "workspaces", "create", "--name", "Bots").split("\t")[0]
    account_id, name, role = (
        _ok(runner, "service-accounts", "create", "--name", "ci-runner").strip().split("\t")
    )
    assert account_id.startswith("svac_") and (name, role) == ("ci-runner", "developer")
    refused = runner.invoke(
        main, ["service-accounts", "key", account_id, "--workspace", workspace_id, "--name", "k"]
    )
    assert refused.exit_code == 1 and "not a member of workspace" in refused.output
    added = _ok(runner, "service-accounts", "add-workspace", account_id, "--workspace", workspace_id)
    assert added.strip() == f"{account_id}\t{workspace_id}\tworkspace_developer"
    key_id, key_workspace, secret = (
        _ok(runner, "service-accounts", "key", account_id, "--workspace", workspace_id, "--name", "k")
        .strip()
        .split("\t")
    )
    assert key_workspace == workspace_id and secret.startswith("sk-wg-api01-")
    assert f"{account_id}\tci-runner\tdeveloper\tactive" in _ok(runner, "service-accounts", "list")

    async def ask() -> str:
        services = Services.from_settings(Settings())
        try:
            org = await services.keys.bootstrap()
            scope = Scope(org.id, None)
            key = await services.keys.authenticate(secret)
            assert key.key.service_account_id == account_id and key.key.id == key_id
            invite = await services.people.create_invite(scope, "sam@example.com", "developer", [])
            _, user = await services.people.accept_invite(scope, invite.id, "Sam")
            first = await services.spend_limits.ask(org.id, user.id, workspace_id, 180 * 10**12, "demo")
            return first.request.id
        finally:
            await services.db.close()

    request_id = asyncio.run(ask())
    listed = _ok(runner, "spend-requests", "list", "--status", "pending")
    assert (
        f"{request_id}\tpending\t{workspace_id}\tsam@example.com\t$180" in listed
        and listed.rstrip().endswith("demo")
    )
    # The same amounts as the console's forms: whole cents, more than $0 (a sub-cent one is refused).
    for amount in ("60.005", "0"):
        refused = runner.invoke(main, ["spend-requests", "approve", request_id, "--usd", amount])
        assert refused.exit_code == 2 and "whole cents from $0.01 to $1,000,000" in refused.output, amount
    approved = _ok(runner, "spend-requests", "approve", request_id, "--usd", "60")
    assert approved.startswith(f"{request_id}\tapproved\t{workspace_id}\t$60")
    again = runner.invoke(main, ["spend-requests", "deny", request_id])
    assert again.exit_code == 1 and "already approved" in again.output
    assert _ok(runner, "spend-requests", "list", "--status", "pending") == ""

    assert _ok(runner, "service-accounts", "archive", account_id).strip() == f"{account_id}\tarchived"
    assert f"{key_id}\t{workspace_id}\tapi\tarchived" in _ok(runner, "keys", "list")
    assert account_id not in _ok(runner, "service-accounts", "list")
