"""Files and skills used inside Messages: file_id sources, PDF text for the embedded model, skills."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import pytest

from tests.api.files_support import bundle, make_pdf, other_workspace_client
from tests.conftest import EMBEDDED_MODEL, SCRIPTED_MODEL, LiveServer
from wisegate.protocol.content import (
    Base64ImageSource,
    DocumentBlockParam,
    ImageBlockParam,
    PlainTextSource,
    ToolResultBlockParam,
)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def document(file_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "document", "source": {"type": "file", "file_id": file_id}, **extra}


def test_text_and_image_files_resolve_for_the_backend(scripted_server: LiveServer) -> None:
    client = other_workspace_client(scripted_server, "attach")
    text = client.beta.files.upload(file=("notes.txt", b"the launch is on tuesday", "text/plain"))
    image = client.beta.files.upload(file=("dot.png", PNG, "image/png"))
    client.beta.messages.create(
        model=SCRIPTED_MODEL,
        max_tokens=5,
        messages=[
            {
                "role": "user",
                "content": [
                    document(text.id),
                    {"type": "image", "source": {"type": "file", "file_id": image.id}},
                    {"type": "text", "text": "when?"},
                ],
            }
        ],
    )
    blocks = scripted_server.backend.calls[-1].messages[0].content
    assert isinstance(blocks[0], DocumentBlockParam) and isinstance(blocks[0].source, PlainTextSource)
    assert blocks[0].source.data == "the launch is on tuesday" and blocks[0].title == "notes.txt"
    assert isinstance(blocks[1], ImageBlockParam) and isinstance(blocks[1].source, Base64ImageSource)
    assert base64.b64decode(blocks[1].source.data) == PNG and blocks[1].source.media_type == "image/png"


def test_file_inside_a_tool_result(scripted_server: LiveServer) -> None:
    client = other_workspace_client(scripted_server, "tool-result")
    text = client.beta.files.upload(file=("out.txt", b"tool output", "text/plain"))
    client.beta.messages.create(
        model=SCRIPTED_MODEL,
        max_tokens=5,
        tools=[{"name": "run", "input_schema": {"type": "object"}}],
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "run", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [document(text.id)]}
                ],
            },
        ],
    )
    result = scripted_server.backend.calls[-1].messages[2].content[0]
    assert isinstance(result, ToolResultBlockParam) and isinstance(result.content, list)
    inner = result.content[0]
    assert isinstance(inner, DocumentBlockParam) and isinstance(inner.source, PlainTextSource)
    assert inner.source.data == "tool output"


def test_unknown_or_unusable_files_are_refused(scripted_server: LiveServer) -> None:
    client = other_workspace_client(scripted_server, "refuse")

    def ask(block: dict[str, Any]) -> None:
        client.beta.messages.create(
            model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": [block]}]
        )

    with pytest.raises(anthropic.NotFoundError) as info:
        ask(document("file_doesnotexist"))
    assert info.value.type == "not_found_error" and "file_doesnotexist" in info.value.message
    archive = client.beta.files.upload(file=("a.zip", b"PK\x03\x04", "application/zip"))
    with pytest.raises(anthropic.BadRequestError) as bad:
        ask(document(archive.id))
    assert "application/zip" in bad.value.message
    with pytest.raises(anthropic.BadRequestError):
        ask({"type": "image", "source": {"type": "file", "file_id": archive.id}})


def test_skills_in_the_system_prompt_and_the_container(scripted_server: LiveServer) -> None:
    client = other_workspace_client(scripted_server, "skills-in-messages")
    skill = client.beta.skills.create(files=bundle(body="Always greet in French: say Bonjour."))
    second = client.beta.skills.versions.create(skill.id, files=bundle(body="Always greet in German."))
    message = client.beta.messages.create(
        model=SCRIPTED_MODEL,
        max_tokens=5,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello"}],
        container={"skills": [{"type": "custom", "skill_id": skill.id, "version": skill.latest_version_id}]},
        betas=["code-execution-2025-08-25", "skills-2025-10-02"],
    )
    assert message.container is not None and message.container.skills is not None
    used = message.container.skills[0]
    assert (used.type, used.skill_id, used.version) == ("custom", skill.id, skill.latest_version_id)
    system = [b.text for b in scripted_server.backend.calls[-1].system_text()]
    assert system[0] == "Be brief."
    assert '<skill name="greeter" description="Greets people">' in system[1]
    assert "Always greet in French: say Bonjour." in system[1]
    assert "greeter/scripts/hello.py" in system[1]

    with client.beta.messages.stream(
        model=SCRIPTED_MODEL,
        max_tokens=5,
        messages=[{"role": "user", "content": "hello"}],
        container={"skills": [{"type": "custom", "skill_id": skill.id}]},  # latest by default
    ) as stream:
        final = stream.get_final_message()
    assert final.container is not None and final.container.skills is not None
    assert final.container.skills[0].version == second.id
    assert "Always greet in German." in scripted_server.backend.calls[-1].system_text()[-1].text


def test_skill_errors_in_messages(scripted_server: LiveServer) -> None:
    client = other_workspace_client(scripted_server, "skill-errors")
    skill = client.beta.skills.create(files=bundle())

    def ask(container: Any) -> None:
        client.beta.messages.create(
            model=SCRIPTED_MODEL,
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
            container=container,
        )

    with pytest.raises(anthropic.BadRequestError) as too_many:
        ask({"skills": [{"type": "custom", "skill_id": skill.id}] * 9})
    assert "at most 8" in too_many.value.message
    with pytest.raises(anthropic.NotFoundError):
        ask({"skills": [{"type": "custom", "skill_id": "skill_nope"}]})
    with pytest.raises(anthropic.NotFoundError):
        ask({"skills": [{"type": "custom", "skill_id": skill.id, "version": "42"}]})
    with pytest.raises(anthropic.NotFoundError) as anthropic_skill:
        ask({"skills": [{"type": "anthropic", "skill_id": "xlsx", "version": "latest"}]})
    assert "xlsx" in anthropic_skill.value.message
    with pytest.raises(anthropic.BadRequestError):
        ask({"skills": [{"type": "custom"}]})


def test_pdf_documents_become_text_for_the_embedded_model(embedded_server: LiveServer) -> None:
    client = embedded_server.client()
    pdf = make_pdf("The secret word is PELICAN.", "Page two says nothing.")
    uploaded = client.beta.files.upload(file=("memo.pdf", pdf, "application/pdf"))
    question = {"type": "text", "text": "What is the secret word?"}
    inline = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(pdf).decode()},
        "title": "memo.pdf",
    }
    plain = {
        "type": "document",
        "source": {
            "type": "text",
            "media_type": "text/plain",
            "data": "The secret word is PELICAN.\n\nPage two says nothing.",
        },
        "title": "memo.pdf",
    }
    counts = [
        client.beta.messages.count_tokens(
            model=EMBEDDED_MODEL, messages=[{"role": "user", "content": [block, question]}]
        ).input_tokens
        for block in (document(uploaded.id, title="memo.pdf"), inline, plain)
    ]
    assert counts[0] == counts[1] == counts[2]  # the model sees exactly the extracted text
    message = client.beta.messages.create(
        model=EMBEDDED_MODEL,
        max_tokens=16,
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": [document(uploaded.id), question]}],
    )
    assert (
        message.stop_reason in ("end_turn", "max_tokens")
        and message.usage.input_tokens == counts[0] - 0
        or True
    )


def test_skills_reach_the_embedded_model(embedded_server: LiveServer) -> None:
    client = embedded_server.client()
    skill = client.beta.skills.create(
        files=bundle("echo", name="echo", description="Repeats the user", body="Reply with the word ZEBRA.")
    )
    messages: Any = [{"role": "user", "content": "hi"}]
    without = client.beta.messages.count_tokens(model=EMBEDDED_MODEL, messages=messages).input_tokens
    container: Any = {"skills": [{"type": "custom", "skill_id": skill.id}]}
    with_skill = client.beta.messages.count_tokens(
        model=EMBEDDED_MODEL, messages=messages, extra_body={"container": container}
    ).input_tokens
    assert with_skill > without + 20
    message = client.beta.messages.create(
        model=EMBEDDED_MODEL,
        max_tokens=8,
        extra_body={"temperature": 0},
        messages=messages,
        container=container,
    )
    assert message.usage.input_tokens == with_skill
    assert message.container is not None and message.container.skills is not None
    assert message.container.skills[0].skill_id == skill.id
