"""Users, invites and workspace members through the SDK's ``client.organization``; an invite is
accepted with ``wisegate invites accept``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import anthropic
import pytest
from anthropic.types.organization.workspace import Workspace
from click.testing import CliRunner

from tests.api.admin_support import AdminServer, admin_server
from wisegate.cli import main
from wisegate.records.directory import Invite
from wisegate.storage.db import Database
from wisegate.storage.directory import DirectoryRepo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    yield from admin_server(tmp_path_factory.mktemp("admin-people"))


def _accept(server: AdminServer, invite_id: str, name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WISEGATE_DATA_DIR", str(server.live.settings.data_dir))
    result = CliRunner().invoke(main, ["invites", "accept", invite_id, "--name", name])
    assert result.exit_code == 0, result.output
    return result.output.split("\t")[0]


def test_invite_accept_and_users(server: AdminServer, monkeypatch: pytest.MonkeyPatch) -> None:
    org = server.admin().organization
    invite = org.invites.create(email="Ada@Example.com", role="developer")
    assert invite.id.startswith("invite_") and invite.type == "invite" and invite.status == "pending"
    assert invite.email == "ada@example.com" and invite.role == "developer"
    assert invite.expires_at - invite.invited_at == timedelta(days=21) and invite.accepted_at is None
    assert org.invites.retrieve(invite.id).id == invite.id

    with pytest.raises(anthropic.BadRequestError) as duplicate:
        org.invites.create(email="ada@example.com", role="user")
    assert duplicate.value.error_code == "invite_already_exists"
    with pytest.raises(anthropic.BadRequestError):
        org.invites.create(email="not-an-email", role="user")
    with pytest.raises(anthropic.BadRequestError):
        org.invites.create(email="x@example.com", role="admin")  # type: ignore[arg-type]

    user_id = _accept(server, invite.id, "Ada Lovelace", monkeypatch)
    accepted = org.invites.retrieve(invite.id)
    assert accepted.status == "accepted" and accepted.accepted_at is not None
    user = org.users.retrieve(user_id)
    assert user.type == "user" and user.email == "ada@example.com" and user.name == "Ada Lovelace"
    assert user.role == "developer"
    assert [u.id for u in org.users.list(email="ADA@example.com")] == [user_id]
    assert org.users.list(email="nobody@example.com").data == []
    assert org.users.update(user_id, role="billing").role == "billing"
    assert [u.id for u in org.users.list(roles=["billing"])] == [user_id]
    with pytest.raises(anthropic.BadRequestError):
        org.invites.create(email="ada@example.com", role="user")  # already a member

    removed = org.users.remove(user_id)
    assert removed.id == user_id and removed.type == "user_deleted"
    with pytest.raises(anthropic.NotFoundError):
        org.users.retrieve(user_id)


def test_invite_listing_expiry_and_delete(server: AdminServer) -> None:
    org = server.admin().organization
    pending = [org.invites.create(email=f"p{i}@example.com", role="user") for i in range(3)]
    past = datetime.now(UTC) - timedelta(days=30)
    expired = Invite(
        "invite_expired1",
        server.organization_id,
        "old@example.com",
        "user",
        "pending",
        past,
        past + timedelta(days=21),
        None,
    )

    async def add() -> None:
        db = Database(server.live.settings.resolved_database_url)
        try:
            await DirectoryRepo(db).add_invite(expired)
        finally:
            await db.close()

    server.live.run(add())
    assert org.invites.retrieve("invite_expired1").status == "expired"
    assert [i.id for i in org.invites.list(statuses=["expired"])] == ["invite_expired1"]
    page = org.invites.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    all_ids = [i.id for i in org.invites.list(limit=2)]  # auto-paginated
    assert {p.id for p in pending} | {"invite_expired1"} <= set(all_ids)
    assert [i.id for i in org.invites.list(email="p1@example.com")] == [pending[1].id]

    deleted = org.invites.delete(pending[0].id)
    assert deleted.id == pending[0].id and deleted.type == "invite_deleted"
    with pytest.raises(anthropic.NotFoundError):
        org.invites.retrieve(pending[0].id)
    with pytest.raises(anthropic.NotFoundError):
        org.invites.delete("invite_nope")
    assert server.get("/v1/organizations/invites", **{"statuses[]": "deleted"}).status_code == 400


def test_workspace_members(server: AdminServer, monkeypatch: pytest.MonkeyPatch) -> None:
    org = server.admin().organization
    workspace = org.workspaces.create(name="Members")
    users = []
    for name in ("grace", "linus", "barbara"):
        invite = org.invites.create(email=f"{name}@example.com", role="developer")
        users.append(_accept(server, invite.id, name.title(), monkeypatch))

    added = org.workspaces.members.add(workspace.id, user_id=users[0], workspace_role="workspace_developer")
    assert added.type == "workspace_member" and added.user_id == users[0]
    assert added.workspace_id == workspace.id and added.workspace_role == "workspace_developer"
    for user_id in users[1:]:
        org.workspaces.members.add(workspace.id, user_id=user_id, workspace_role="workspace_user")
    with pytest.raises(anthropic.BadRequestError, match="already a member"):
        org.workspaces.members.add(workspace.id, user_id=users[0], workspace_role="workspace_user")
    with pytest.raises(anthropic.BadRequestError):
        org.workspaces.members.add(workspace.id, user_id=users[0], workspace_role="workspace_owner")  # type: ignore[arg-type]
    with pytest.raises(anthropic.NotFoundError):
        org.workspaces.members.add(workspace.id, user_id="user_nope", workspace_role="workspace_user")

    members = org.workspaces.members.list(workspace.id, limit=2)
    assert [m.user_id for m in members.data] == users[:2] and members.has_more
    assert [m.user_id for m in members] == users
    member = org.workspaces.members.retrieve(users[1], workspace_id=workspace.id)
    assert member.workspace_role == "workspace_user"
    updated = org.workspaces.members.update(
        users[1], workspace_id=workspace.id, workspace_role="workspace_admin"
    )
    assert updated.workspace_role == "workspace_admin"

    removed = org.workspaces.members.remove(users[2], workspace_id=workspace.id)
    assert removed.type == "workspace_member_deleted" and removed.user_id == users[2]
    with pytest.raises(anthropic.NotFoundError):
        org.workspaces.members.retrieve(users[2], workspace_id=workspace.id)
    with pytest.raises(anthropic.NotFoundError):
        org.workspaces.members.list("wrkspc_nope")
    # Removing a user removes their memberships.
    org.users.remove(users[0])
    assert [m.user_id for m in org.workspaces.members.list(workspace.id)] == [users[1]]


def test_a_leavers_keys_stop_with_their_access(server: AdminServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys a person made in the console are archived when they leave a workspace (there) or the
    organization (everywhere), as a service account's are; a key they did not make stays."""
    org = server.admin().organization
    team = org.workspaces.create(name="Leavers")
    invite = org.invites.create(email="leaver@example.com", role="developer")
    user_id = _accept(server, invite.id, "Leaver", monkeypatch)
    org.workspaces.members.add(team.id, user_id=user_id, workspace_role="workspace_developer")
    live = server.live
    default_id = live.run(live.services.keys.default_workspace(server.organization_id)).id

    def key_in(workspace_id: str, by: str | None) -> tuple[str, anthropic.Anthropic]:
        record, secret = live.run(live.services.keys.create_key(workspace_id, "k", created_by_user_id=by))
        return record.id, anthropic.Anthropic(base_url=server.base_url, api_key=secret, max_retries=0)

    def works(client: anthropic.Anthropic) -> bool:
        live.services.keys.forget_cached()
        try:
            client.models.list()
        except anthropic.AuthenticationError:
            return False
        return True

    (in_team, team_client), (in_default, default_client) = (
        key_in(team.id, user_id),
        key_in(default_id, user_id),
    )
    _, others = key_in(team.id, None)
    assert works(team_client) and works(default_client) and works(others)
    org.workspaces.members.remove(user_id, workspace_id=team.id)
    assert not works(team_client) and works(default_client) and works(others)
    assert org.api_keys.retrieve(in_team).status == "archived"
    org.users.remove(user_id)
    assert not works(default_client) and works(others)
    assert org.api_keys.retrieve(in_default).status == "archived"


def _admin_and_user(
    server: AdminServer,
    workspace_name: str,
    names: tuple[str, str],
    tag: str,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Workspace, list[str]]:
    """A new workspace whose workspace admin is the first of two new people (``NAME-TAG@example.com``)
    and whose workspace user is the second: the workspace and their user ids."""
    org = server.admin().organization
    workspace = org.workspaces.create(name=workspace_name)
    users = []
    for name in names:
        invite = org.invites.create(email=f"{name}-{tag}@example.com", role="developer")
        users.append(_accept(server, invite.id, name.title(), monkeypatch))
    org.workspaces.members.add(workspace.id, user_id=users[0], workspace_role="workspace_admin")
    org.workspaces.members.add(workspace.id, user_id=users[1], workspace_role="workspace_user")
    return workspace, users


def test_the_last_workspace_admin_keeps_the_role(
    server: AdminServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the Admin API as in the console: the workspace's only workspace admin can be neither
    demoted nor removed (400 saying why); once another member is one, they can."""
    org = server.admin().organization
    workspace, users = _admin_and_user(server, "Keeps an admin", ("ada", "alan"), "kept", monkeypatch)
    refusal = f"ada-kept@example.com is the last workspace admin of workspace {workspace.id}"
    with pytest.raises(anthropic.BadRequestError, match=refusal):
        org.workspaces.members.update(users[0], workspace_id=workspace.id, workspace_role="workspace_user")
    with pytest.raises(anthropic.BadRequestError, match=refusal):
        org.workspaces.members.remove(users[0], workspace_id=workspace.id)
    assert (
        org.workspaces.members.retrieve(users[0], workspace_id=workspace.id).workspace_role
        == "workspace_admin"
    )
    # Not an admin: changed and removed freely.
    org.workspaces.members.update(users[1], workspace_id=workspace.id, workspace_role="workspace_developer")

    org.workspaces.members.update(users[1], workspace_id=workspace.id, workspace_role="workspace_admin")
    demoted = org.workspaces.members.update(
        users[0], workspace_id=workspace.id, workspace_role="workspace_user"
    )
    assert demoted.workspace_role == "workspace_user"
    with pytest.raises(anthropic.BadRequestError, match="alan-kept@example.com is the last workspace admin"):
        org.workspaces.members.remove(users[1], workspace_id=workspace.id)
    org.workspaces.members.remove(users[0], workspace_id=workspace.id)


def test_a_last_workspace_admin_stays_in_the_organization(
    server: AdminServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing a person from the organization refuses a workspace's last workspace admin (400 naming
    the workspace, nothing changed), as removing them from that workspace does; once another member is
    its workspace admin, or the workspace is archived (it takes no new members), they can leave."""
    org = server.admin().organization
    workspace, users = _admin_and_user(
        server, "Keeps an admin on leave", ("hopper", "lamarr"), "leaves", monkeypatch
    )
    live = server.live
    key, _ = live.run(live.services.keys.create_key(workspace.id, "k", created_by_user_id=users[0]))

    refusal = f"hopper-leaves@example.com is the last workspace admin of workspace {workspace.id}"
    with pytest.raises(
        anthropic.BadRequestError, match=f"{refusal}.*make another member its workspace admin"
    ):
        org.users.remove(users[0])
    assert org.users.retrieve(users[0]).id == users[0]
    assert [(m.user_id, m.workspace_role) for m in org.workspaces.members.list(workspace.id)] == [
        (users[0], "workspace_admin"),
        (users[1], "workspace_user"),
    ]
    assert org.api_keys.retrieve(key.id).status == "active"

    org.workspaces.members.update(users[1], workspace_id=workspace.id, workspace_role="workspace_admin")
    assert org.users.remove(users[0]).id == users[0]
    assert org.api_keys.retrieve(key.id).status == "archived"
    with pytest.raises(
        anthropic.BadRequestError, match="lamarr-leaves@example.com is the last workspace admin"
    ):
        org.users.remove(users[1])
    org.workspaces.archive(workspace.id)
    assert org.users.remove(users[1]).id == users[1]


def test_a_service_account_is_no_workspace_admin_to_keep(
    server: AdminServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service account may hold ``workspace_admin``, but nobody administers a workspace as one (it
    cannot sign in to the console, and its keys call the API as any key of their workspace does): the
    workspace's last person who is its workspace admin keeps the role and stays in the organization."""
    org = server.admin().organization
    workspace = org.workspaces.create(name="Robots do not administer")
    invite = org.invites.create(email="turing-kept@example.com", role="developer")
    user_id = _accept(server, invite.id, "Turing", monkeypatch)
    org.workspaces.members.add(workspace.id, user_id=user_id, workspace_role="workspace_admin")
    robot = org.service_accounts.create(name="robot-admin")
    org.service_accounts.workspaces.add(robot.id, workspace_id=workspace.id, workspace_role="workspace_admin")

    refusal = f"turing-kept@example.com is the last workspace admin of workspace {workspace.id}"
    with pytest.raises(anthropic.BadRequestError, match=refusal):
        org.workspaces.members.update(user_id, workspace_id=workspace.id, workspace_role="workspace_user")
    with pytest.raises(anthropic.BadRequestError, match=refusal):
        org.workspaces.members.remove(user_id, workspace_id=workspace.id)
    with pytest.raises(anthropic.BadRequestError, match=refusal):
        org.users.remove(user_id)
