"""The console in headless Chromium (Debian's, driven by Playwright): log in, create a workspace and a
key, list what the SDK made with that key, stream a playground answer, and see the usage update."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import SCRIPTED_MODEL, LiveServer, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend

CHROMIUM = "/usr/bin/chromium"  # installed by scripts/test from Debian's packages


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path_factory.mktemp("console-browser"))
    # Paced words, so the page can be seen mid-stream.
    yield from serve(settings, backends={"scripted": ScriptedBackend(options={"token_delay": 0.08})})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _admin_key(server: LiveServer) -> str:
    """A new admin key, made on the server's loop (Playwright's sync API holds this thread's loop)."""

    async def create() -> str:
        keys = server.services.keys
        workspace = await keys.default_workspace(server.services.organization_id)
        _, secret = await keys.create_key(workspace.id, "browser admin", admin=True)
        return secret

    secret: str = server.run(create())
    return secret


def _choose_workspace(page: Page, path: str, name: str) -> None:
    page.goto(path)
    page.locator("select[name=workspace_id]").first.select_option(label=name)
    page.get_by_role("button", name="Show").click()


def test_console_in_a_browser(server: LiveServer, browser: Browser, tmp_path: Path) -> None:
    context = browser.new_context(base_url=server.base_url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(f"{r.method} {r.url}: {r.failure}"))
    # No page logs an error, nor does what the browser asks for by itself (the favicon, on every page).
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto("/console/keys")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_text("Use an admin key").click()  # the bootstrap sign-in, folded under the password form
    page.get_by_label("Admin key").fill("sk-wg-admin01-wrong")
    refused = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    with page.expect_console_message(lambda m: m.text == refused):  # it may come after the page
        page.get_by_role("button", name="Log in with the admin key").click()
    expect(page.get_by_role("alert")).to_contain_text("not an active admin key")
    errors.remove(refused)  # that refusal's 401 was asked for
    page.get_by_label("Admin key").fill(_admin_key(server))
    page.get_by_role("button", name="Log in with the admin key").click()
    expect(page).to_have_url(re.compile(r"/console/keys$"))
    cookie = next(c for c in context.cookies() if c["name"] == "wisegate_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    page.goto("/console/workspaces")
    form = page.locator("#create-workspace")
    form.get_by_label("Name").fill("Browser team")
    form.get_by_role("button", name="Create workspace").click()
    expect(page.get_by_role("status")).to_contain_text("Workspace “Browser team” created")

    page.goto("/console/keys")
    form = page.locator("#create-key")
    form.get_by_label("Name").fill("browser key")
    form.get_by_label("Workspace").select_option(label="Browser team")
    form.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key-secret").inner_text()
    assert secret.startswith("sk-wg-api01-")

    client = server.client(api_key=secret)
    uploaded = client.beta.files.upload(file=("browser.txt", b"made by the SDK", "text/plain"))
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": "b1",
                "params": {
                    "model": SCRIPTED_MODEL,
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": "x"}],
                },
            }
        ]
    )
    _choose_workspace(page, "/console/files", "Browser team")
    expect(page.locator(f'tr[data-file-id="{uploaded.id}"]')).to_contain_text("browser.txt")
    _choose_workspace(page, "/console/batches", "Browser team")
    expect(page.locator(f'tr[data-batch-id="{batch.id}"]')).to_be_visible()

    _choose_workspace(page, "/console/playground", "Browser team")
    words = "one two three four five six seven eight nine ten eleven twelve"
    page.get_by_label("Message").fill(words)
    page.get_by_label("System prompt").fill("answer plainly")
    page.get_by_role("button", name="Send").click()
    # Part of the answer is on the page while the stream is still open...
    # (polled from Python: the console's CSP forbids the eval that wait_for_function needs)
    partial = ""
    for _ in range(500):
        state = page.locator("#playground").get_attribute("data-state")
        partial = page.locator("#playground-output").inner_text()
        if state == "streaming" and partial:
            break
        page.wait_for_timeout(10)
    assert partial and partial != words and words.startswith(partial.strip()), partial
    # ...and all of it once the stream ends.
    expect(page.locator("#playground-output")).to_have_text(words)
    expect(page.locator("#playground-usage")).to_contain_text("12 output tokens")
    expect(page.locator("#playground")).to_have_attribute("data-state", "done")
    expect(page.locator("#playground-error")).to_be_hidden()
    assert server.backend.calls[-1].system == "answer plainly"

    page.goto("/console")
    page.get_by_label("Workspace").select_option(label="Browser team")
    page.get_by_role("button", name="Show").click()
    row = page.locator("#usage-by-model tr", has_text=SCRIPTED_MODEL)
    expect(row.locator("td").nth(1)).to_have_text("2")  # the batch request and the playground's
    expect(page.locator("#tokens-chart rect.bar").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "console-usage.png"), full_page=True)
    assert not failed, failed
    assert not errors, errors
    context.close()
