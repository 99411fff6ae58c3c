"""What every console page shares: the login check, CSRF, rendering, flash messages and form fields.

A page handler is ``async def handler(op: Operator) -> Response`` wrapped in :func:`page`: without a
valid session it redirects to the login form; a POST without the session's CSRF token is refused
(403); an ``ApiError`` raised by a domain service (bad input, unknown id, archived workspace…) becomes
a message on the page — after a POST, a redirect back to the form with the message as a flash.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from wisegate.console.session import COOKIE, Session, SessionCodec, load_secret
from wisegate.domain.keys import Principal
from wisegate.domain.pricing import parse_usd
from wisegate.domain.scope import Scope
from wisegate.errors import ApiError, InvalidRequest
from wisegate.services import Services, services_of
from wisegate.storage.repos import ApiKey

FLASH_COOKIE = "wisegate_console_flash"
HEADERS = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


@cache
def templates() -> Jinja2Templates:
    return Jinja2Templates(directory=Path(__file__).parent / "templates")


def codec_of(request: Request) -> SessionCodec:
    """The app's session codec, built on first use (this is when the secret file may be created)."""
    codec: SessionCodec | None = getattr(request.app.state, "console_codec", None)
    if codec is None:
        settings = services_of(request).settings
        secret = load_secret(settings.console_secret, settings.data_dir)
        codec = SessionCodec(secret, settings.console_session_seconds)
        request.app.state.console_codec = codec
    return codec


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """A console page, with the security headers every page carries and the pending flash shown."""
    flash = _read_flash(request)
    response = templates().TemplateResponse(
        request, template, {"flash": flash, **context}, status_code=status, headers=HEADERS
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/console")
    return response


def cookie_options(request: Request) -> dict[str, Any]:
    """HttpOnly, SameSite=Strict, scoped to /console; Secure when served over https."""
    return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https"}


def _read_flash(request: Request) -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        kind, message = json.loads(unquote(raw))
        return str(kind), str(message)
    except (ValueError, TypeError):
        return None


def redirect(request: Request, to: str, *, notice: str | None = None, error: str | None = None) -> Response:
    """303 to ``to`` (a /console path), carrying a one-time message."""
    response = RedirectResponse(to, status_code=303, headers=HEADERS)
    if notice or error:
        value = quote(json.dumps(["error" if error else "notice", error or notice]))
        response.set_cookie(FLASH_COOKIE, value, max_age=60, path="/console", **cookie_options(request))
    return response


def safe_path(candidate: str | None, default: str = "/console") -> str:
    """``candidate`` if it is a path inside the console (never another site), else ``default``."""
    if candidate and candidate.startswith("/console") and not candidate.startswith("//"):
        if "\\" not in candidate and "\r" not in candidate and "\n" not in candidate:
            return candidate
    return default


@dataclass
class Operator:
    """The logged-in admin: their key, the organization scope, and this request's form."""

    request: Request
    services: Services
    key: ApiKey
    session: Session
    csrf: str
    form: FormData = field(default_factory=FormData)

    @property
    def scope(self) -> Scope:
        return Scope.of(Principal(self.key))

    @property
    def organization_id(self) -> str:
        return self.key.organization_id

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return render(self.request, template, status, op=self, csrf=self.csrf, **context)

    def back(self, *, notice: str | None = None, error: str | None = None) -> Response:
        """Redirect to the page the form was on (its ``back`` field)."""
        target = safe_path(str(self.form.get("back") or ""), self.request.url.path)
        return redirect(self.request, target, notice=notice, error=error)

    def text(self, name: str, *, required: bool = False, label: str | None = None) -> str:
        value = str(self.form.get(name) or "").strip()
        if required and not value:
            raise InvalidRequest(f"{label or name}: this field is required")
        return value

    def usd_pico(self, name: str, *, label: str, allow_negative: bool = False) -> int | None:
        """A USD amount field in picodollars; blank is None."""
        raw = self.text(name).removeprefix("$").replace(",", "")
        if not raw:
            return None
        try:
            value = parse_usd(raw)
        except ValueError as exc:
            raise InvalidRequest(f"{label}: {exc}") from None
        if value < 0 and not allow_negative:
            raise InvalidRequest(f"{label}: must not be negative")
        return value

    def integer(self, name: str, *, label: str, low: int, high: int) -> int | None:
        raw = self.text(name)
        if not raw:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise InvalidRequest(f"{label}: '{raw}' is not a whole number") from None
        if not low <= value <= high:
            raise InvalidRequest(f"{label}: must be between {low} and {high}, got {value}")
        return value


Handler = Callable[[Operator], Awaitable[Response]]


async def _operator(request: Request) -> Operator | None:
    codec = codec_of(request)
    session = codec.read(request.cookies.get(COOKIE))
    if session is None:
        return None
    services = services_of(request)
    key = await services.keys.get(session.key_id)
    if key is None or key.kind != "admin" or key.status != "active":
        return None
    request.state.organization_id = key.organization_id
    return Operator(request, services, key, session, codec.csrf_token(session))


def to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/console/login?next={quote(target)}", status_code=303, headers=HEADERS)
    if request.cookies.get(COOKIE):
        response.delete_cookie(COOKIE, path="/console")
    return response


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A console endpoint: session required, CSRF checked on POST, domain errors shown on the page."""

    async def endpoint(request: Request) -> Response:
        op = await _operator(request)
        if op is None:
            return to_login(request)
        if request.method == "POST":
            op.form = await request.form()
            if not codec_of(request).check_csrf(op.session, str(op.form.get("csrf_token") or "")):
                message = (
                    "This form has expired or did not come from this console. Reload the page and retry."
                )
                return op.render("error.html", status=403, message=message)
        try:
            return await handler(op)
        except ApiError as exc:
            if request.method == "POST":
                return op.back(error=exc.message)
            return op.render("error.html", status=exc.status, message=exc.message)

    endpoint.__name__ = handler.__name__
    return endpoint
