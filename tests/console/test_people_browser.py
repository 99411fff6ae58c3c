"""People in headless Chromium: a developer invited through the CLI joins by the link, signs in with a
password, makes a key in Account Settings and uses it with the official SDK; single sign-on against a
local OpenID Connect provider (``oidc-provider-mock``, a real provider built on authlib's server); each
role's navigation; a copied session cookie stops working after logout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from oidc_provider_mock import User, run_server_in_thread
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import SCRIPTED_MODEL, LiveServer, scripted_settings, serve
from tests.console.support import PASSWORD, invite, join
from tests.console.test_browser import CHROMIUM
from wisegate.backends.scripted import ScriptedBackend
from wisegate.console.session import COOKIE

NAV = (
    "Usage",
    "Requests",
    "API keys",
    "Workspaces",
    "Members",
    "Limits",
    "Batches",
    "Files",
    "Playground",
    "Account",
)


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    sam = User(sub="sam", claims={"email": "sam@example.com", "email_verified": True, "name": "Sam Single"})
    with run_server_in_thread(user_claims=[sam], require_nonce=True) as idp:
        yield f"http://127.0.0.1:{idp.server_port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, provider: str) -> Iterator[LiveServer]:
    settings = scripted_settings(
        tmp_path_factory.mktemp("people-browser"),
        console_sso_issuer=provider,
        console_sso_client_id="wisegate-console",
        console_sso_client_secret="not-a-real-secret",
        console_sso_allowed_domains=["example.com"],
    )
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _cli_invite(server: LiveServer, email: str) -> str:
    """``wisegate invites create`` in its own process, on the server's data dir; the printed link."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WISEGATE_")}
    env |= {
        "WISEGATE_DATA_DIR": str(server.settings.data_dir),
        "WISEGATE_CONSOLE_PUBLIC_URL": server.base_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "wisegate", "invites", "create", "--email", email, "--role", "developer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("invite_") and f"\t{email}\tdeveloper\t" in lines[0]
    assert lines[1].startswith(f"{server.base_url}/console/invite/")
    return lines[1]


def _nav(page: Page) -> set[str]:
    return {text.strip() for text in page.locator("header nav a").all_inner_texts()}


def _sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/console/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def test_invited_developer_joins_signs_in_and_uses_a_key_with_the_sdk(
    server: LiveServer, browser: Browser
) -> None:
    link = _cli_invite(server, "dee@example.com")
    context = browser.new_context(base_url=server.base_url)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(15_000)

    page.goto(link)
    expect(page.get_by_role("heading", name="Join the organization")).to_be_visible()
    page.get_by_label("Name").fill("Dee Developer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Join").click()
    expect(page).to_have_url(re.compile(r"/console/account$"))
    assert _nav(page) == {"Usage", "Requests", "Batches", "Files", "Playground", "Account"}
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/console/login$"))

    page.goto(link)  # the link worked once
    expect(page.locator("main")).to_contain_text("This invite link is not valid")

    _sign_in(page, "dee@example.com", "a wrong password!")
    expect(page.get_by_role("alert")).to_contain_text("Email or password is incorrect.")
    _sign_in(page, "dee@example.com")
    expect(page).to_have_url(re.compile(r"/console$"))
    page.get_by_role("link", name="Account").click()
    form = page.locator("#create-my-key")
    form.get_by_label("Name").fill("dee's laptop")
    form.get_by_label("Workspace").select_option(label="Default")
    form.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key-secret").inner_text()
    assert secret.startswith("sk-wg-api01-")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#new-key").get_by_role("button", name="Copied")).to_be_visible()

    message = server.client(api_key=secret).messages.create(
        model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "hello from Dee"}]
    )
    assert message.content and message.usage.output_tokens > 0
    expect(page.locator("#my-keys")).to_contain_text("dee's laptop")

    page.goto("/console/members")  # absent from the navigation, and refused when typed in
    expect(page.locator("main")).to_contain_text("Your role does not allow this")

    copied = next(c["value"] for c in context.cookies() if c["name"] == COOKIE)
    with httpx.Client(base_url=server.base_url, cookies={COOKIE: copied}) as thief:
        assert thief.get("/console/account").status_code == 200
        page.goto("/console/account")
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(re.compile(r"/console/login$"))
        assert thief.get("/console/account").status_code == 303
    context.close()


def test_single_sign_on_with_a_local_provider(server: LiveServer, browser: Browser, provider: str) -> None:
    invite(server, "sam@example.com", "billing")
    context = browser.new_context(base_url=server.base_url)
    page = context.new_page()
    page.set_default_timeout(15_000)

    page.goto("/console/login")
    page.get_by_role("link", name="Sign in with single sign-on").click()
    expect(page).to_have_url(re.compile(r"/oauth2/authorize"))
    page.get_by_role("button", name="sam", exact=True).click()
    expect(page).to_have_url(re.compile(r"/console$"))
    assert _nav(page) == {"Usage", "Requests", "Limits", "Account"}  # the invite's role: billing
    page.get_by_role("link", name="Account").click()
    expect(page.locator("#profile")).to_contain_text("sam@example.com")
    page.get_by_role("button", name="Log out").click()

    # someone the provider knows but Wisegate does not, and an e-mail outside the allowed domains
    for who, answer in (
        ("stranger@example.com", "has no account here yet"),
        ("x@elsewhere.org", "allowed domain"),
    ):
        verified = {"email": who, "email_verified": True}  # the provider vouches for the address
        httpx.put(f"{provider}/users/{who}", json=verified).raise_for_status()
        page.goto("/console/login")
        page.get_by_role("link", name="Sign in with single sign-on").click()
        page.get_by_placeholder("sub").fill(who)
        page.get_by_role("button", name="Authorize").click()
        expect(page.get_by_role("alert")).to_contain_text(answer)
    assert COOKIE not in {c["name"] for c in context.cookies()}
    context.close()


@pytest.mark.parametrize(
    ("role", "grants", "shown"),
    [
        ("user", False, {"Usage", "Requests", "Playground", "Account"}),
        ("billing", False, {"Usage", "Requests", "Limits", "Account"}),
        (
            "developer",
            True,
            {"Usage", "Requests", "API keys", "Limits", "Batches", "Files", "Playground", "Account"},
        ),
        ("admin", False, set(NAV)),
    ],
)
def test_each_role_sees_its_navigation(
    server: LiveServer, browser: Browser, role: str, grants: bool, shown: set[str]
) -> None:
    email = f"nav-{role}@example.com"
    workspace = server.run(server.services.keys.default_workspace(server.services.organization_id)).id
    join(
        server,
        email,
        "developer" if role == "admin" else role,
        [(workspace, "workspace_admin")] if grants else None,
    ).close()
    if role == "admin":

        async def promote() -> None:
            from wisegate.domain.scope import Scope

            assert server.services.organization_id is not None
            scope = Scope(server.services.organization_id, None)
            user = next(u for u in await server.services.people.list_users(scope) if u.email == email)
            await server.services.people.update_user(scope, user.id, "admin")

        server.run(promote())
    context = browser.new_context(base_url=server.base_url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    _sign_in(page, email)
    expect(page.locator("header nav")).to_be_visible()
    assert _nav(page) == shown
    for label in set(NAV) - shown:
        path = {"Usage": "/console", "API keys": "/console/keys"}.get(label, f"/console/{label.lower()}")
        page.goto(path)
        expect(page.locator("main")).to_contain_text("Your role does not allow this")
    context.close()
