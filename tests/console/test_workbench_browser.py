"""The workbench in headless Chromium: a multi-turn conversation (the answer becomes a turn; turns are
edited and deleted), a tool call answered with a tool result, Stop in the middle of a stream (the partial
answer stays a turn), token counting, Get code and a saved prompt loaded back."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import SCRIPTED_MODEL, LiveServer, scripted_settings, serve
from tests.console.test_browser import CHROMIUM
from wisegate.backends.scripted import ScriptedBackend
from wisegate.protocol.events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    InputJsonDelta,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
)
from wisegate.protocol.messages import Message, ToolUseBlock, Usage


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path_factory.mktemp("workbench-browser"))
    # Paced words, so Stop can be pressed mid-stream.
    yield from serve(settings, backends={"scripted": ScriptedBackend(options={"token_delay": 0.05})})


@pytest.fixture(scope="module")
def page(server: LiveServer) -> Iterator[Page]:
    async def create() -> str:
        keys = server.services.keys
        workspace = await keys.default_workspace(server.services.organization_id)
        _, secret = await keys.create_key(workspace.id, "workbench admin", admin=True)
        return secret

    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(base_url=server.base_url).new_page()
            page.set_default_timeout(15_000)
            page.goto("/console/login")
            page.get_by_text("Use an admin key").click()
            page.get_by_label("Admin key").fill(server.run(create()))
            page.get_by_role("button", name="Log in with the admin key").click()
            expect(page.locator("header nav")).to_be_visible()
            yield page
        finally:
            browser.close()


def _send(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#playground")).to_have_attribute("data-state", "done")


def test_multi_turn_tools_stop_count_code_and_saved_prompt(server: LiveServer, page: Page) -> None:
    backend = server.backend
    page.goto("/console/playground")
    page.get_by_label("System prompt").fill("be short")
    _send(page, "first question")
    expect(page.locator("#conversation .turn")).to_have_count(2)
    expect(page.get_by_label("Turn 2 (assistant)")).to_have_value("first question")
    _send(page, "second question")
    sent = backend.calls[-1]
    assert [m.role for m in sent.messages] == ["user", "assistant", "user"] and sent.system == "be short"
    expect(page.locator("#conversation .turn")).to_have_count(4)

    page.get_by_label("Turn 1 (user)").fill("an edited first question")
    page.get_by_label("Turn 1 (user)").press("Tab")
    page.locator("#conversation .turn").nth(3).get_by_role("button", name="Delete turn").click()
    expect(page.locator("#conversation .turn")).to_have_count(3)
    page.get_by_role("button", name="Count tokens").click()
    expect(page.locator("#token-count")).to_have_text(re.compile(r"^\d+ input tokens$"))
    page.get_by_role("button", name="Get code").click()
    expect(page.locator("#code-python")).to_contain_text("an edited first question")
    expect(page.locator("#code-curl")).to_contain_text("/v1/messages")
    expect(page.locator("#code-typescript")).to_contain_text(f'"model": "{SCRIPTED_MODEL}"')

    backend.enqueue(
        events=[
            MessageStart(message=Message(id="msg_tool", model=SCRIPTED_MODEL, usage=Usage(input_tokens=5))),
            ContentBlockStart(index=0, content_block=ToolUseBlock(id="toolu_w1", name="weather", input={})),
            ContentBlockDelta(index=0, delta=InputJsonDelta(partial_json='{"city": "Oslo"}')),
            ContentBlockStop(index=0),
            MessageDelta(
                delta=MessageDeltaBody(stop_reason="tool_use"), usage=MessageDeltaUsage(output_tokens=9)
            ),
            MessageStop(),
        ]
    )
    page.locator("details summary").click()
    schema = '{"type": "object", "properties": {"city": {"type": "string"}}}'
    tools = f'[{{"name": "weather", "input_schema": {schema}}}]'
    page.get_by_label("Tools (JSON list)").fill(tools)
    _send(page, "weather in Oslo?")
    card = page.locator('.tool-use[data-tool-use-id="toolu_w1"]')
    expect(card).to_contain_text('weather {"city":"Oslo"}')
    card.get_by_label("Result of weather").fill("cold")
    card.get_by_role("button", name="Send tool result").click()
    expect(page.locator("#playground")).to_have_attribute("data-state", "done")
    last = backend.calls[-1].messages
    assert last[-2].role == "assistant" and last[-1].role == "user"
    assert last[-1].model_dump(exclude_none=True)["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_w1",
        "content": "cold",
    }

    long = " ".join(f"w{i}" for i in range(200))
    turns_before = page.locator("#conversation .turn").count()
    page.get_by_label("Message").fill(long)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#playground-output")).to_contain_text("w3")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#playground")).to_have_attribute("data-state", "stopped")
    expect(page.locator("#playground-usage")).to_have_text("stopped")
    shown = page.locator("#playground-output").text_content() or ""
    assert "w3" in shown and "w199" not in shown
    # The question and the partial answer stay in the conversation, as shown when Stop was pressed.
    expect(page.locator("#conversation .turn")).to_have_count(turns_before + 2)
    expect(page.get_by_label(f"Turn {turns_before + 1} (user)")).to_have_value(long)
    expect(page.get_by_label(f"Turn {turns_before + 2} (assistant)")).to_have_value(shown)
    expect(page.get_by_label("Message")).to_have_value("")
    _send(page, "go on")  # the partial answer is sent back as the assistant turn
    sent = backend.calls[-1].messages
    assert sent[-2].role == "assistant" and sent[-2].content == shown and sent[-1].content == "go on"
    turns_before += 4

    page.get_by_label("Save as").fill("Oslo weather")
    page.get_by_role("button", name="Save prompt").click()
    expect(page.get_by_role("status")).to_contain_text("Prompt “Oslo weather” saved.")
    page.goto("/console/playground")
    page.get_by_role("link", name="Oslo weather").click()
    expect(page.get_by_label("System prompt")).to_have_value("be short")
    expect(page.locator("#conversation .turn")).to_have_count(turns_before)
    expect(page.get_by_label("Turn 1 (user)")).to_have_value("an edited first question")
