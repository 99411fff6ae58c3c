"""Console test helpers: log in with httpx, read CSRF tokens from pages."""

from __future__ import annotations

import re

import httpx

from tests.conftest import LiveServer, make_key


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
