"""Single sign-on over HTTP against the local OpenID Connect provider the browser tests use
(``oidc-provider-mock``, authlib's server): ``email_verified`` must be JSON ``true``; an account is linked
to the provider's ``sub`` and a second ``sub`` presenting the same e-mail is refused. SQLite and
PostgreSQL."""

from __future__ import annotations

import contextlib
import html
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from oidc_provider_mock import run_server_in_thread

from tests.conftest import LiveServer, postgres_database, scripted_settings, serve
from tests.console.support import invite, join
from wisegate.backends.scripted import ScriptedBackend
from wisegate.console.session import COOKIE
from wisegate.domain.scope import Scope


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with run_server_in_thread(require_nonce=True) as idp:
        yield f"http://127.0.0.1:{idp.server_port}"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, provider: str
) -> Iterator[LiveServer]:
    with postgres_database() if request.param == "postgres" else contextlib.nullcontext() as url:
        settings = scripted_settings(
            tmp_path_factory.mktemp("sso-linking"),
            console_sso_issuer=provider,
            console_sso_client_id="wisegate-console",
            console_sso_client_secret="not-a-real-secret",
            console_sso_allowed_domains=["example.com"],
            **({"database_url": url} if url else {}),
        )
        yield from serve(settings, backends={"scripted": ScriptedBackend()})


def _provider_user(provider: str, sub: str, claims: dict[str, Any]) -> None:
    httpx.put(f"{provider}/users/{sub}", json=claims).raise_for_status()


def _sso(server: LiveServer, sub: str) -> tuple[httpx.Client, httpx.Response]:
    """The whole flow with a fresh client: start, the provider's consent form answered as ``sub``, the
    callback. Returns the client (holding a session if one was opened) and the callback's answer."""
    client = httpx.Client(base_url=server.base_url, timeout=30)
    start = client.get("/console/sso/start")
    assert start.status_code == 303, start.text
    answer = httpx.post(start.headers["location"], data={"sub": sub})
    assert answer.status_code == 302, answer.text
    return client, client.get(answer.headers["location"])


def _signed_in_as(client: httpx.Client, response: httpx.Response) -> str:
    assert response.status_code == 200 and "Signed in" in response.text, response.text[:1000]
    assert COOKIE in client.cookies
    account = client.get("/console/account")
    assert account.status_code == 200
    return account.text


def test_email_verified_must_be_json_true(server: LiveServer, provider: str) -> None:
    invite(server, "vera@example.com", "developer")
    for n, verified in enumerate(["false", "true", None, 1, False]):
        claims: dict[str, Any] = {"email": "vera@example.com", "name": "Vera"}
        if verified is not None:
            claims["email_verified"] = verified
        _provider_user(provider, f"vera-{n}", claims)
        client, refused = _sso(server, f"vera-{n}")
        assert refused.status_code == 403, (verified, refused.text[:500])
        assert "the e-mail vera@example.com is not verified by the provider" in html.unescape(refused.text)
        assert COOKIE not in client.cookies
        client.close()
    scope = Scope(server.services.organization_id or "", None)
    assert not server.run(server.services.people.list_users(scope, email="vera@example.com"))

    _provider_user(provider, "vera-ok", {"email": "vera@example.com", "email_verified": True})
    client, done = _sso(server, "vera-ok")
    assert "vera@example.com" in _signed_in_as(client, done)  # the pending invite, accepted now
    client.close()


def test_an_account_stays_with_the_subject_it_was_linked_to(server: LiveServer, provider: str) -> None:
    join(server, "lin@example.com", "developer").close()  # a password account, not linked yet
    _provider_user(provider, "lin-a", {"email": "lin@example.com", "email_verified": True})
    _provider_user(provider, "lin-b", {"email": "lin@example.com", "email_verified": True})

    first, done = _sso(server, "lin-a")
    assert "lin@example.com" in _signed_in_as(first, done)  # linked to lin-a now
    first.close()

    intruder, refused = _sso(server, "lin-b")
    text = html.unescape(refused.text)
    assert (
        refused.status_code == 403 and "the account of lin@example.com is linked to another identity" in text
    )
    assert COOKIE not in intruder.cookies
    intruder.close()

    # The linked subject keeps signing in, even after its e-mail changed at the provider.
    _provider_user(provider, "lin-a", {"email": "lin.new@example.com", "email_verified": True})
    again, done = _sso(server, "lin-a")
    assert "lin@example.com" in _signed_in_as(again, done)
    again.close()

    organization_id = server.services.organization_id or ""
    events = server.run(server.services.accounts.audit_log(organization_id))
    assert any(
        e.action == "sign_in.failed"
        and e.target == "lin@example.com"
        and e.detail == {"reason": "sso: e-mail linked to another provider subject"}
        for e in events
    )
