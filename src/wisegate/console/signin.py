"""Signing in and out: e-mail and password, an admin key (bootstrap), an invite link, single sign-on.

Forms shown before a session exists carry a double-submit token (``LOGIN_COOKIE``) against login
CSRF. A successful sign-in always makes a new session (the one the browser held, if any, is ended).
"""

from __future__ import annotations

import html
import math
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from wisegate.console.session import COOKIE, LOGIN_COOKIE, SSO_COOKIE
from wisegate.console.web import (
    HEADERS,
    Operator,
    client_of,
    cookie_options,
    page,
    redirect,
    render,
    safe_path,
)
from wisegate.domain.accounts import PASSWORD_MIN
from wisegate.domain.keys import ADMIN_KEY_PREFIX
from wisegate.domain.secret import digest, same
from wisegate.errors import ApiError, AuthenticationFailed
from wisegate.services import Services, services_of


def _form_page(
    request: Request, template: str, status: int = 200, *, error: str | None = None, **context: Any
) -> Response:
    token = secrets.token_urlsafe(16)
    response = render(request, template, status, login_token=token, error=error, **context)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/console", **cookie_options(request))
    return response


def _login_page(
    request: Request, next_path: str | None, error: str | None = None, status: int = 200
) -> Response:
    services = services_of(request)
    return _form_page(
        request,
        "login.html",
        status,
        error=error,
        next=safe_path(next_path),
        prefix=ADMIN_KEY_PREFIX,
        sso=services.sso is not None,
    )


def _form_ok(request: Request, form: Any) -> bool:
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    return bool(expected) and same(str(form.get("login_token") or ""), expected)


def _signed_in(request: Request, services: Services, token: str, to: str) -> Response:
    response = redirect(request, safe_path(to))
    _set_session(request, services, response, token)
    return response


def _set_session(request: Request, services: Services, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE, token, max_age=services.accounts.session_seconds, path="/console", **cookie_options(request)
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console")


async def login_form(request: Request) -> Response:
    return _login_page(request, request.query_params.get("next"))


async def login(request: Request) -> Response:
    """Sign in with e-mail and password (or, with the ``key`` field, an admin key)."""
    form = await request.form()
    next_path = str(form.get("next") or "")
    if not _form_ok(request, form):
        return _login_page(request, next_path, "The sign-in form expired. Please try again.", 403)
    services = services_of(request)
    organization_id = services.organization_id
    assert organization_id is not None
    client = client_of(request)
    replaces = request.cookies.get(COOKIE)
    try:
        if "key" in form:
            try:
                principal = await services.keys.authenticate(str(form.get("key") or "").strip(), kind="admin")
            except AuthenticationFailed:
                await services.accounts.audit(
                    organization_id, None, "sign_in.failed", client=client, detail={"reason": "admin key"}
                )
                raise AuthenticationFailed(
                    f"That is not an active admin key ({ADMIN_KEY_PREFIX}…)."
                ) from None
            token, _ = await services.accounts.open_admin_key_session(
                principal.key, client, replaces=_digest_or_none(replaces)
            )
        else:
            token, _ = await services.accounts.sign_in(
                organization_id,
                str(form.get("email") or ""),
                str(form.get("password") or ""),
                client,
                replaces=_digest_or_none(replaces),
            )
    except ApiError as exc:
        refused = _login_page(request, next_path, exc.message, exc.status)
        if exc.retry_after is not None:  # throttled: when to try again, as the API's 429s say it
            refused.headers["retry-after"] = str(math.ceil(exc.retry_after))
        return refused
    return _signed_in(request, services, token, next_path)


def _digest_or_none(token: str | None) -> str | None:
    return digest(token) if token and len(token) <= 256 else None


@page()
async def logout(op: Operator) -> Response:
    """End this session on the server: its cookie stops working everywhere at once."""
    await op.services.accounts.sign_out(op.viewer, op.client)
    response = redirect(op.request, "/console/login")
    response.delete_cookie(COOKIE, path="/console")
    return response


def _refused(request: Request, exc: ApiError) -> Response:
    refused = render(request, "error.html", exc.status, message=exc.message)
    if exc.retry_after is not None:
        refused.headers["retry-after"] = str(math.ceil(exc.retry_after))
    return refused


async def invite_form(request: Request) -> Response:
    services = services_of(request)
    try:
        invite = await services.accounts.invite_for_link(request.path_params["token"], client_of(request))
    except ApiError as exc:
        return _refused(request, exc)
    return _form_page(request, "invite.html", invite=invite, password_min=PASSWORD_MIN)


async def accept_invite(request: Request) -> Response:
    """Choose a name and a password; the person is signed in with the invite's role."""
    services = services_of(request)
    form = await request.form()
    token = request.path_params["token"]
    try:
        invite = await services.accounts.invite_for_link(token, client_of(request))
    except ApiError as exc:
        return _refused(request, exc)
    if not _form_ok(request, form):
        return _form_page(
            request,
            "invite.html",
            403,
            error="The form expired. Please try again.",
            invite=invite,
            password_min=PASSWORD_MIN,
        )
    try:
        session_token, _ = await services.accounts.accept_invite(
            token, str(form.get("name") or ""), str(form.get("password") or ""), client_of(request)
        )
    except ApiError as exc:
        return _form_page(
            request,
            "invite.html",
            exc.status,
            error=exc.message,
            invite=invite,
            password_min=PASSWORD_MIN,
            name=str(form.get("name") or "")[:256],
        )
    return _signed_in(request, services, session_token, "/console/account")


def _callback_url(request: Request, services: Services) -> str:
    base = services.settings.console_public_url or str(request.base_url)
    return base.rstrip("/") + "/console/sso/callback"


async def sso_start(request: Request) -> Response:
    """Send the browser to the OpenID Connect provider."""
    services = services_of(request)
    if services.sso is None:
        return render(request, "error.html", 404, message="Single sign-on is not configured on this server.")
    try:
        url, flow = await services.sso.start(
            _callback_url(request, services), safe_path(request.query_params.get("next"))
        )
    except ApiError as exc:
        return _login_page(request, None, exc.message, exc.status)
    response = RedirectResponse(url, status_code=303, headers=HEADERS)
    # Lax, not Strict: the provider sends the browser back with a cross-site top-level GET.
    response.set_cookie(
        SSO_COOKIE,
        flow,
        max_age=600,
        path="/console/sso",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


async def sso_callback(request: Request) -> Response:
    """Finish single sign-on and open a session.

    The answer is a page that moves on by itself (not a redirect): the browser arrived here from the
    provider's site, and a SameSite=Strict session cookie is only sent on a navigation that starts here.
    """
    services = services_of(request)
    if services.sso is None:
        return render(request, "error.html", 404, message="Single sign-on is not configured on this server.")
    params = request.query_params
    flow = request.cookies.get(SSO_COOKIE)
    organization_id = services.organization_id
    assert organization_id is not None
    client = client_of(request)
    try:
        if params.get("error"):
            detail = params.get("error_description") or params["error"]
            raise AuthenticationFailed(f"The provider refused the sign-in: {detail[:200]}")
        identity = await services.sso.finish(
            flow, params.get("state", ""), params.get("code", ""), _callback_url(request, services)
        )
        token, _ = await services.accounts.sign_in_sso(
            organization_id,
            identity,
            services.sso,
            client,
            replaces=_digest_or_none(request.cookies.get(COOKIE)),
        )
    except ApiError as exc:
        response = _login_page(request, None, exc.message, exc.status)
        response.delete_cookie(SSO_COOKIE, path="/console/sso")
        return response
    to = html.escape(safe_path(services.sso.next_path(flow)), quote=True)
    response = HTMLResponse(
        f'<!doctype html><meta http-equiv="refresh" content="0;url={to}">'
        f'<title>Signed in</title><p><a href="{to}">Continue to the console</a></p>',
        headers=HEADERS,
    )
    _set_session(request, services, response, token)
    response.delete_cookie(SSO_COOKIE, path="/console/sso")
    return response
