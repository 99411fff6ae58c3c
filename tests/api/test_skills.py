"""The Skills API through the official SDK (``client.beta.skills`` and ``.versions``)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.api.files_support import bundle, other_workspace_client, skill_md
from tests.conftest import LiveServer, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend

MAX = 64 * 1024


@pytest.fixture(scope="module")
def skills_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path_factory.mktemp("skills"), skills_max_bytes=MAX)
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def test_create_retrieve_list(skills_server: LiveServer) -> None:
    client = other_workspace_client(skills_server, "create")
    skill = client.beta.skills.create(files=bundle(), display_name="Greeter")
    assert skill.id.startswith("skill_") and skill.type == "skill"
    assert skill.display_name == "Greeter" and skill.source.type == "custom"
    assert skill.latest_version_id.isdigit() and len(skill.latest_version_id) == 16  # epoch microseconds
    assert client.beta.skills.retrieve(skill.id) == skill

    untitled = client.beta.skills.create(files=bundle("helper", name="helper", description="Helps"))
    assert untitled.display_name == "helper"  # from the front matter's name
    listed = [s.id for s in client.beta.skills.list()]
    assert listed == [untitled.id, skill.id]
    assert [s.id for s in client.beta.skills.list(source="custom")] == listed
    assert client.beta.skills.list(source="anthropic").data == []
    paged = client.beta.skills.list(limit=1)
    assert len(paged.data) == 1 and paged.next_page is not None
    assert [s.id for s in client.beta.skills.list(limit=1)] == listed  # auto-pagination follows next_page

    version = client.beta.skills.versions.retrieve("latest", skill_id=skill.id)
    assert (version.id, version.skill_id, version.type) == (
        skill.latest_version_id,
        skill.id,
        "skill_version",
    )
    assert (version.name, version.description) == ("greeter", "Greets people")


def test_display_title_form_field_is_accepted(skills_server: LiveServer) -> None:
    client = other_workspace_client(skills_server, "title")
    skill = client.beta.skills.create(files=bundle(), extra_body={"display_title": "Legacy Title"})
    assert skill.display_name == "Legacy Title"


def test_versions(skills_server: LiveServer) -> None:
    client = other_workspace_client(skills_server, "versions")
    skill = client.beta.skills.create(files=bundle())
    second = client.beta.skills.versions.create(
        skill.id, files=bundle(description="Greets people warmly", body="Say hello warmly.")
    )
    assert int(second.id) > int(skill.latest_version_id)
    assert second.description == "Greets people warmly"
    assert client.beta.skills.retrieve(skill.id).latest_version_id == second.id
    assert [v.id for v in client.beta.skills.versions.list(skill.id)] == [second.id, skill.latest_version_id]
    assert [v.id for v in client.beta.skills.versions.list(skill.id, limit=1)] == [
        second.id,
        skill.latest_version_id,
    ]
    assert client.beta.skills.versions.retrieve(second.id, skill_id=skill.id) == second

    archive = client.beta.skills.versions.download(second.id, skill_id=skill.id).read()
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        assert sorted(zipped.namelist()) == ["greeter/SKILL.md", "greeter/scripts/hello.py"]
        assert b"Say hello warmly." in zipped.read("greeter/SKILL.md")

    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.skills.delete(skill.id)
    assert "versions" in info.value.message
    deleted = client.beta.skills.versions.delete(second.id, skill_id=skill.id)
    assert (deleted.id, deleted.type) == (second.id, "skill_version_deleted")
    assert client.beta.skills.retrieve(skill.id).latest_version_id == skill.latest_version_id
    with pytest.raises(anthropic.NotFoundError):
        client.beta.skills.versions.retrieve(second.id, skill_id=skill.id)
    client.beta.skills.versions.delete(skill.latest_version_id, skill_id=skill.id)
    gone = client.beta.skills.delete(skill.id)
    assert (gone.id, gone.type) == (skill.id, "skill_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.skills.retrieve(skill.id)


def test_a_version_keeps_the_skill_name(skills_server: LiveServer) -> None:
    client = other_workspace_client(skills_server, "rename")
    skill = client.beta.skills.create(files=bundle())
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.skills.versions.create(skill.id, files=bundle("other", name="other"))
    assert "does not match" in info.value.message


def test_name_taken_in_a_workspace_is_409(skills_server: LiveServer) -> None:
    client = other_workspace_client(skills_server, "taken")
    client.beta.skills.create(files=bundle())
    with pytest.raises(anthropic.ConflictError) as info:
        client.beta.skills.create(files=bundle())
    assert info.value.error_code == "skill_name_taken"
    other_workspace_client(skills_server, "free").beta.skills.create(files=bundle())  # another workspace


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ([("greeter/SKILL.md", b"no front matter here", "text/markdown")], "front matter"),
        ([("greeter/SKILL.md", b"---\nname: [unclosed\n---\nbody", "text/markdown")], "YAML"),
        ([("greeter/SKILL.md", b"---\n- a list\n---\nbody", "text/markdown")], "mapping"),
        ([("greeter/SKILL.md", skill_md(name="Bad_Name"), "text/markdown")], "lowercase"),
        ([("greeter/SKILL.md", skill_md(name="claude-helper"), "text/markdown")], "reserved"),
        ([("greeter/SKILL.md", b"---\nname: greeter\n---\nbody", "text/markdown")], "description"),
        ([("greeter/SKILL.md", skill_md(description="x" * 1025), "text/markdown")], "1024"),
        ([("greeter/SKILL.md", skill_md(description="uses <b>tags</b>"), "text/markdown")], "XML"),
        ([("greeter/README.md", b"hi", "text/markdown")], "SKILL.md is required"),
        ([("SKILL.md", skill_md(), "text/markdown")], "top-level directory"),
        (bundle() + [("other/x.txt", b"x", "text/plain")], "same top-level directory"),
        ([("greeter/../SKILL.md", skill_md(), "text/markdown")], "invalid file path"),
    ],
)
def test_invalid_bundles_are_400(
    skills_server: LiveServer, files: list[tuple[str, bytes, str]], words: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        skills_server.client().beta.skills.create(files=files)
    assert info.value.type == "invalid_request_error"
    assert words in info.value.message, info.value.message


def test_missing_files_part_and_oversize(skills_server: LiveServer) -> None:
    url, headers = f"{skills_server.base_url}/v1/skills", {"x-api-key": skills_server.key}
    missing = httpx.post(url, headers=headers, data={"display_name": "x"}, files={"other": ("a", b"a")})
    assert missing.status_code == 400 and "files" in missing.json()["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as info:
        skills_server.client().beta.skills.create(
            files=bundle() + [("greeter/big.bin", b"x" * (MAX + 1), "application/octet-stream")]
        )
    assert info.value.status_code == 413


def test_unknown_ids_are_404(skills_server: LiveServer) -> None:
    client = skills_server.client()
    for call in (
        lambda: client.beta.skills.retrieve("skill_unknown"),
        lambda: client.beta.skills.delete("skill_unknown"),
        lambda: client.beta.skills.versions.list("skill_unknown"),
        lambda: client.beta.skills.versions.create("skill_unknown", files=bundle()),
        lambda: client.beta.skills.versions.retrieve("1", skill_id="skill_unknown"),
    ):
        with pytest.raises(anthropic.NotFoundError) as info:
            call()
        assert info.value.type == "not_found_error"
    skill = other_workspace_client(skills_server, "unknown-version").beta.skills.create(files=bundle())
    with pytest.raises(anthropic.NotFoundError):
        client.beta.skills.versions.retrieve("123", skill_id=skill.id)  # a skill of another workspace


def test_isolation_between_workspaces(skills_server: LiveServer) -> None:
    mine = other_workspace_client(skills_server, "mine")
    theirs = other_workspace_client(skills_server, "theirs")
    skill = mine.beta.skills.create(files=bundle())
    assert theirs.beta.skills.list().data == []
    with pytest.raises(anthropic.NotFoundError):
        theirs.beta.skills.retrieve(skill.id)
    with pytest.raises(anthropic.NotFoundError):
        theirs.beta.skills.versions.list(skill.id)
    with pytest.raises(anthropic.NotFoundError):
        theirs.beta.skills.versions.delete(skill.latest_version_id, skill_id=skill.id)
    with pytest.raises(anthropic.NotFoundError):
        theirs.beta.skills.versions.download(skill.latest_version_id, skill_id=skill.id)
    with pytest.raises(anthropic.NotFoundError):
        theirs.beta.messages.create(
            model="scripted-1",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
            container={"skills": [{"type": "custom", "skill_id": skill.id, "version": "latest"}]},
        )
    assert mine.beta.skills.retrieve(skill.id).id == skill.id
