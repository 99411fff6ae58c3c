"""Console test helpers: log in with httpx, read CSRF tokens from pages."""

from __future__ import annotations

import re

import httpx

from tests.conftest import LiveServer, make_key
from wisegate.domain.scope import Scope


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def login(server: LiveServer, admin_key: str | None = None) -> httpx.Client:
    """An httpx client holding a console session of a (new) admin key."""
    client = httpx.Client(base_url=server.base_url, timeout=30)
    form = client.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token
    key = admin_key or make_key(server.settings, admin=True)
    response = client.post(
        "/console/login", data={"key": key, "login_token": token.group(1), "next": "/console"}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console"
    return client


def post(client: httpx.Client, page: str, action: str, data: dict[str, str]) -> httpx.Response:
    """Submit a form of ``page`` (with that page's CSRF token) to ``action``."""
    token = csrf_of(client.get(page).text)
    return client.post(action, data={"csrf_token": token, "back": page, **data})


def flash(client: httpx.Client, response: httpx.Response) -> str:
    """Follow a form's redirect and return the page's flash message."""
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    match = re.search(r'<p class="flash (?:notice|error)"[^>]*>(.*?)</p>', page.text, re.S)
    assert match, page.text[:2000]
    return match.group(1)


PASSWORD = "a long enough password"


def _login_token(html: str) -> str:
    match = re.search(r'name="login_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def invite(server: LiveServer, email: str, role: str, grants: list[tuple[str, str]] | None = None) -> str:
    """A pending invite made on the server's loop; returns its accept link's path."""

    async def create() -> str:
        services = server.services
        assert services.organization_id is not None
        made = await services.people.create_invite(
            Scope(services.organization_id, None), email, role, grants or []
        )
        token = services.people.link_token(made)
        assert token is not None
        return f"/console/invite/{token}"

    path: str = server.run(create())
    return path


def join(
    server: LiveServer, email: str, role: str, grants: list[tuple[str, str]] | None = None
) -> httpx.Client:
    """A person invited with ``role`` who accepted the link over HTTP: a client holding their session."""
    link = invite(server, email, role, grants)
    client = httpx.Client(base_url=server.base_url, timeout=30)
    form = client.get(link)
    assert form.status_code == 200, form.text
    joined = client.post(
        link, data={"login_token": _login_token(form.text), "name": email.split("@")[0], "password": PASSWORD}
    )
    assert joined.status_code == 303 and joined.headers["location"] == "/console/account", joined.text
    return client


def sign_in(server: LiveServer, email: str, password: str = PASSWORD) -> tuple[httpx.Client, httpx.Response]:
    """Submit the e-mail and password form with a fresh client: the client (holding any session) and
    the answer."""
    client = httpx.Client(base_url=server.base_url, timeout=30)
    form = client.get("/console/login")
    response = client.post(
        "/console/login", data={"login_token": _login_token(form.text), "email": email, "password": password}
    )
    return client, response
