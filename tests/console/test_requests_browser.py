"""The Requests page and the spend limit request flow in headless Chromium: an admin finds a request by
id among others and downloads the log as CSV; a developer asks for a higher limit in Account Settings,
an admin approves it on Limits, and the developer sees the answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import SCRIPTED_MODEL, LiveServer, scripted_settings, serve
from tests.console.support import PASSWORD, join
from tests.console.test_browser import CHROMIUM
from wisegate.backends.scripted import ScriptedBackend


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path_factory.mktemp("requests-browser"))
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _admin_page(server: LiveServer, browser: Browser) -> Page:
    async def create() -> str:
        keys = server.services.keys
        workspace = await keys.default_workspace(server.services.organization_id)
        _, secret = await keys.create_key(workspace.id, "browser admin", admin=True)
        return secret

    page = browser.new_context(base_url=server.base_url, accept_downloads=True).new_page()
    page.set_default_timeout(15_000)
    page.goto("/console/login")
    page.get_by_text("Use an admin key").click()
    page.get_by_label("Admin key").fill(server.run(create()))
    page.get_by_role("button", name="Log in with the admin key").click()
    expect(page.locator("header nav")).to_be_visible()
    return page


def test_request_log_page_finds_by_id_and_downloads_csv(
    server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    client = anthropic.Anthropic(base_url=server.base_url, api_key=server.key, max_retries=0)
    ids = [
        client.messages.with_raw_response.create(
            model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": f"hi {i}"}]
        ).headers["request-id"]
        for i in range(3)
    ]
    page = _admin_page(server, browser)
    page.get_by_role("link", name="Requests").click()
    expect(page).to_have_url(re.compile(r"/console/requests$"))
    for request_id in ids:
        expect(page.locator(f'tr[data-request-id="{request_id}"]')).to_contain_text(SCRIPTED_MODEL)
    expect(page.locator(f'tr[data-request-id="{ids[0]}"] td.status')).to_have_text("ok")

    page.get_by_label("Request id").fill(ids[1])
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#request-log tbody tr")).to_have_count(1)
    expect(page.locator(f'tr[data-request-id="{ids[1]}"]')).to_be_visible()

    page.goto("/console/requests")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    saved = tmp_path / "log.csv"
    download.value.save_as(saved)
    text = saved.read_text()
    assert text.startswith("created_at,request_id,") and all(i in text for i in ids)
    page.context.close()


def test_spend_limit_request_asked_and_approved_in_the_browser(server: LiveServer, browser: Browser) -> None:
    join(server, "asker@example.com", "developer").close()
    dev = browser.new_context(base_url=server.base_url).new_page()
    dev.set_default_timeout(15_000)
    dev.goto("/console/login")
    dev.get_by_label("Email").fill("asker@example.com")
    dev.get_by_label("Password").fill(PASSWORD)
    dev.get_by_role("button", name="Sign in", exact=True).click()
    expect(dev.locator("header nav")).to_be_visible()
    dev.goto("/console/account")
    form = dev.locator("#ask-spend-limit")
    form.get_by_label("Monthly limit (USD)").fill("120")
    form.get_by_label("Reason").fill("a demo next week")
    form.get_by_role("button", name="Ask for more").click()
    expect(dev.get_by_role("status")).to_contain_text("Asked for a higher spend limit")
    expect(dev.locator("#spend-requests tr.spend-request td.status")).to_have_text("pending")

    admin = _admin_page(server, browser)
    admin.goto("/console/limits")
    row = admin.locator("#spend-limit-requests tbody tr", has_text="a demo next week")
    expect(row.get_by_label("Approved monthly limit in USD")).to_have_value("120.00")
    row.get_by_label("Approved monthly limit in USD").fill("100")
    row.get_by_role("button", name="Approve").click()
    expect(admin.get_by_role("status")).to_contain_text("monthly spend limit is now $100.00")
    expect(admin.locator("#spend-limit-requests")).to_have_count(0)

    dev.reload()
    expect(dev.locator("#spend-requests tr.spend-request td.status")).to_have_text(
        re.compile(r"approved \(\$100\.0+\)")
    )
    dev.context.close()
    admin.context.close()
