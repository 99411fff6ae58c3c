"""The Admin API's repositories and the report query on both databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests.storage.test_repos import database_url  # noqa: F401  (the parametrized fixture)
from wisegate.domain.keys import KeyService
from wisegate.records.directory import Invite, User, WorkspaceMember, WorkspaceSettings
from wisegate.records.usage import UsageFilter, UsageRecord
from wisegate.storage.db import Database, migrate
from wisegate.storage.directory import DirectoryRepo
from wisegate.storage.reports import UsageReportRepo
from wisegate.storage.repos import TenancyRepo, UsageRepo
from wisegate.storage.tables import Base


def test_migrations_match_the_tables(database_url: str) -> None:  # noqa: F811
    migrate(database_url)

    async def diff() -> list[object]:
        db = Database(database_url)
        try:
            async with db.engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
                )
        finally:
            await db.close()

    assert asyncio.run(diff()) == []


def test_directory_and_report_rows(database_url: str) -> None:  # noqa: F811
    migrate(database_url)

    async def run() -> None:
        db = Database(database_url)
        try:
            keys = KeyService(TenancyRepo(db))
            org = await keys.bootstrap()
            workspace = await keys.default_workspace(org.id)
            key, _ = await keys.create_key(workspace.id, "k")
            directory = DirectoryRepo(db)

            await directory.save_workspace_settings(WorkspaceSettings(workspace.id, "#123456", ("a", "b")))
            assert (await directory.workspace_settings(workspace.id)) == WorkspaceSettings(
                workspace.id, "#123456", ("a", "b")
            )
            await directory.save_workspace_settings(WorkspaceSettings(workspace.id, "#654321", None))
            assert (await directory.all_workspace_settings([workspace.id]))[
                workspace.id
            ].allowed_models is None

            now = datetime.now(UTC).replace(microsecond=0)
            invite = Invite(
                "invite_1", org.id, "a@example.com", "user", "pending", now, now + timedelta(days=21), None
            )
            await directory.add_invite(invite)
            user = User("user_1", org.id, "a@example.com", "A", "user", now)
            accepted = await directory.accept_invite("invite_1", user)
            assert accepted.status == "accepted" and accepted.accepted_at == now
            assert await directory.user_by_email(org.id, "a@example.com") == user
            await directory.add_member(WorkspaceMember(workspace.id, "user_1", "workspace_user", now))
            assert (await directory.set_member_role(workspace.id, "user_1", "workspace_admin")) is not None
            assert [m.workspace_role for m in await directory.list_members(workspace.id)] == [
                "workspace_admin"
            ]
            assert await directory.remove_user("user_1") == workspace.id  # its last workspace admin
            assert [m.user_id for m in await directory.list_members(workspace.id)] == ["user_1"]
            await directory.add_invite(replace(invite, id="invite_2", email="b@example.com"))
            await directory.accept_invite(
                "invite_2", User("user_2", org.id, "b@example.com", "B", "user", now)
            )
            await directory.add_member(WorkspaceMember(workspace.id, "user_2", "workspace_admin", now))
            assert await directory.remove_user("user_1") is True
            assert [m.user_id for m in await directory.list_members(workspace.id)] == ["user_2"]

            usage = UsageRepo(db)
            minute = now.replace(second=0)
            for i, (model, offset, tokens) in enumerate(
                [("m", 0, 10), ("m", 30, 20), ("m", 60, 250_000), ("n", 0, 5), ("m", 120, 1)]
            ):
                await usage.add(
                    UsageRecord(
                        f"req_{i}",
                        org.id,
                        workspace.id,
                        key.id,
                        model,
                        tokens,
                        1,
                        2,
                        3,
                        "standard",
                        "end_turn",
                        None,
                        False,
                        1,
                        minute + timedelta(seconds=offset),
                    )
                )
            where = UsageFilter(org.id, minute, minute + timedelta(minutes=2), models=["m"])
            sums = sorted(await UsageReportRepo(db).sums(where), key=lambda s: s.minute)
            assert [
                (s.minute, s.long_context, s.requests, s.input_tokens, s.output_tokens) for s in sums
            ] == [
                (minute, False, 2, 30, 2),
                (minute + timedelta(minutes=1), True, 1, 250_000, 1),
            ]
            assert (sums[0].cache_creation_input_tokens, sums[0].cache_read_input_tokens) == (4, 6)
        finally:
            await db.close()

    asyncio.run(run())
