"""What every console page shares: the session check, permissions, CSRF, rendering, flash messages and
form fields.

A page handler is ``async def handler(op: Operator) -> Response`` wrapped in :func:`page`: without a
valid session it redirects to the sign-in form; without the permission the page needs (from the role
table, ``domain/roles.py``) it answers 403; a POST without the session's CSRF token is refused (403);
an ``ApiError`` raised by a domain service (bad input, unknown id, archived workspace…) becomes a
message on the page — after a POST, a redirect back to the form with the message as a flash. Every
POST that succeeds is written to the audit record.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from wisegate.console.session import COOKIE, check_csrf, csrf_token
from wisegate.domain.accounts import Client, Viewer
from wisegate.domain.pricing import parse_usd
from wisegate.domain.roles import Permission
from wisegate.domain.scope import Scope
from wisegate.errors import ApiError, InvalidRequest, PermissionDenied
from wisegate.protocol.bounds import (
    EMAIL_LENGTH,
    KEY_NAME_LENGTH,
    NAME_LENGTH,
    NOTE_LENGTH,
    NUL_MESSAGE,
    REASON_LENGTH,
    WORKSPACE_NAME_LENGTH,
    echo,
)
from wisegate.protocol.json_depth import check_depth
from wisegate.protocol.numbers import ascii_integer
from wisegate.records.tenancy import ApiKey
from wisegate.services import Services, services_of

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
    loaded = Jinja2Templates(directory=Path(__file__).parent / "templates")
    # Form fields' maxlength, from the bounds the domain and the tables enforce.
    loaded.env.globals["bounds"] = {
        "email": EMAIL_LENGTH,
        "key_name": KEY_NAME_LENGTH,
        "name": NAME_LENGTH,
        "note": NOTE_LENGTH,
        "reason": REASON_LENGTH,
        "workspace_name": WORKSPACE_NAME_LENGTH,
    }
    return loaded


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
        text = unquote(raw)
        check_depth(text)  # a forged cookie of ``[[[[…`` would exhaust json's recursion
        kind, message = json.loads(text)
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


def page_of(action: str) -> str:
    """The page a form posting to ``action`` belongs to (``/console/account/profile`` ->
    ``/console/account``; ``/console/workspaces`` itself): where to go back when the form names none
    we accept, as a form's own path below a page answers only POST. Account, open to every person,
    when no page's path leads to it."""
    pages = [
        path
        for _, path, _, _ in NAV
        if action == path or (path != "/console" and action.startswith(path + "/"))
    ]
    return max(pages, key=len, default="/console/account")


# The navigation: (name, path, label, permissions of which one opens the page; none: every person).
NAV: tuple[tuple[str, str, str, tuple[Permission, ...]], ...] = (
    ("usage", "/console", "Usage", (Permission.READ_USAGE, Permission.READ_BILLING)),
    ("requests", "/console/requests", "Requests", (Permission.READ_USAGE, Permission.READ_BILLING)),
    ("keys", "/console/keys", "API keys", (Permission.READ_KEYS,)),
    ("workspaces", "/console/workspaces", "Workspaces", (Permission.MANAGE_WORKSPACES,)),
    ("members", "/console/members", "Members", (Permission.MANAGE_MEMBERS,)),
    ("limits", "/console/limits", "Limits", (Permission.READ_BILLING, Permission.READ_LIMITS)),
    ("batches", "/console/batches", "Batches", (Permission.READ_BATCHES,)),
    ("files", "/console/files", "Files", (Permission.READ_FILES,)),
    ("playground", "/console/playground", "Playground", (Permission.USE_PLAYGROUND,)),
    ("account", "/console/account", "Account", ()),
)
NOT_ALLOWED = "Your role does not allow this. Ask an admin of your organization if you need it."


def client_of(request: Request) -> Client:
    host = request.client.host if request.client else "unknown"
    return Client(host, request.headers.get("user-agent", "")[:256])


@dataclass
class Operator:
    """The signed-in viewer (a person, or an admin key), and this request's form."""

    request: Request
    services: Services
    viewer: Viewer
    csrf: str
    form: FormData = field(default_factory=FormData)

    @property
    def scope(self) -> Scope:
        """The organization scope domain services are called with, once a permission was checked."""
        return Scope(self.viewer.organization_id, None)

    @property
    def organization_id(self) -> str:
        return self.viewer.organization_id

    @property
    def user_id(self) -> str | None:
        return self.viewer.user.id if self.viewer.user else None

    @property
    def client(self) -> Client:
        return client_of(self.request)

    def allows(self, permission: Permission, workspace_id: str | None = None) -> bool:
        return self.viewer.access.allows(permission, workspace_id)

    def can(self, permission: str, workspace_id: str | None = None) -> bool:
        """:meth:`allows` by the permission's name (for templates)."""
        return self.allows(Permission(permission), workspace_id)

    def require(self, permission: Permission, workspace_id: str | None = None) -> None:
        """403 unless the viewer's roles grant ``permission`` (in ``workspace_id``)."""
        if not self.allows(permission, workspace_id):
            raise PermissionDenied(NOT_ALLOWED)

    def workspaces_allowing(self, *permissions: Permission) -> list[str]:
        return self.viewer.access.workspaces_allowing(*permissions)

    @property
    def nav(self) -> list[tuple[str, str, str]]:
        """The pages this viewer may open (and only those are shown)."""
        shown = []
        for name, path, label, needs in NAV:
            if name == "account" and self.viewer.user is None:
                continue
            if not needs or any(self.allows(p) for p in needs):
                shown.append((name, path, label))
        return shown

    def acting_key(self, workspace_id: str) -> ApiKey:
        """Who acts in a workspace-scoped service call: the admin key of an admin-key session, else
        a stand-in for the person (kind ``console``: it never authenticates a request)."""
        viewer = self.viewer
        if viewer.admin_key is not None:
            return replace(viewer.admin_key, workspace_id=workspace_id)
        assert viewer.user is not None
        return ApiKey(
            viewer.user.id,
            viewer.organization_id,
            workspace_id,
            viewer.label,
            "",
            "console",
            "active",
            viewer.session.created_at,
        )

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return render(self.request, template, status, op=self, csrf=self.csrf, **context)

    def back(self, *, notice: str | None = None, error: str | None = None) -> Response:
        """Redirect to the page the form was on (its ``back`` field)."""
        target = safe_path(str(self.form.get("back") or ""), page_of(self.request.url.path))
        return redirect(self.request, target, notice=notice, error=error)

    def text(self, name: str, *, required: bool = False, label: str | None = None) -> str:
        value = str(self.form.get(name) or "").strip()
        if required and not value:
            raise InvalidRequest(f"{label or name}: this field is required")
        if "\x00" in value:  # no column can hold it on PostgreSQL: refused alike on SQLite
            raise InvalidRequest(f"{label or name}: {NUL_MESSAGE}")
        return value

    def usd_pico(
        self,
        name: str,
        *,
        label: str,
        allow_negative: bool = False,
        parse: Callable[[str], int] = parse_usd,
    ) -> int | None:
        """A USD amount field in picodollars (``parse``: ``parse_usd``, or a stricter one); blank is
        None."""
        raw = self.text(name).removeprefix("$").replace(",", "")
        if not raw:
            return None
        try:
            value = parse(raw)
        except ValueError as exc:
            raise InvalidRequest(f"{label}: {exc}") from None
        if value < 0 and not allow_negative:
            raise InvalidRequest(f"{label}: must not be negative")
        return value

    def integer(self, name: str, *, label: str, low: int, high: int) -> int | None:
        raw = self.text(name)
        if not raw:
            return None
        negative = raw.startswith("-")
        value = ascii_integer(raw[1:] if negative else raw)  # not "٣" nor "1_000"
        if value is None:
            raise InvalidRequest(f"{label}: '{echo(raw)}' is not a whole number")
        value = -value if negative else value
        if not low <= value <= high:
            raise InvalidRequest(f"{label}: must be between {low} and {high}, got {value}")
        return value


Handler = Callable[[Operator], Awaitable[Response]]
# Form fields never written to the audit record.
_UNRECORDED = frozenset(
    {
        "csrf_token",
        "back",
        "password",
        "current_password",
        "new_password",
        "confirm_password",
        "message",
        "system",
        "turns",
        "tools",
        "stop_sequences",
    }
)


async def _operator(request: Request) -> Operator | None:
    services = services_of(request)
    viewer = await services.accounts.viewer(request.cookies.get(COOKIE))
    if viewer is None:
        return None
    request.state.organization_id = viewer.organization_id
    return Operator(request, services, viewer, csrf_token(services.secret, viewer.session.id))


def to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/console/login?next={quote(target)}", status_code=303, headers=HEADERS)
    if request.cookies.get(COOKIE):
        response.delete_cookie(COOKIE, path="/console")
    return response


def page(
    *needs: Permission, person: bool = False
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A console endpoint: session required; one of ``needs`` (anywhere) required, else 403;
    ``person``: a person's session only (not an admin key's); CSRF checked on POST; domain errors shown
    on the page; successful POSTs audited."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            op = await _operator(request)
            if op is None:
                return to_login(request)
            if request.method == "POST":
                op.form = await request.form()
                if not check_csrf(
                    op.services.secret, op.viewer.session.id, str(op.form.get("csrf_token") or "")
                ):
                    message = (
                        "This form has expired or did not come from this console. Reload the page and retry."
                    )
                    return op.render("error.html", status=403, message=message)
            allowed = (not needs or any(op.allows(p) for p in needs)) and (
                not person or op.viewer.user is not None
            )
            try:
                if not allowed:
                    raise PermissionDenied(NOT_ALLOWED)
                response = await handler(op)
            except ApiError as exc:
                if request.method == "POST" and exc.status != 403:
                    return op.back(error=exc.message)
                return op.render("error.html", status=exc.status, message=exc.message)
            if request.method == "POST" and response.status_code < 400:
                detail = {k: str(v)[:200] for k, v in op.form.items() if k not in _UNRECORDED}
                await op.services.accounts.audit(
                    op.organization_id,
                    op.viewer,
                    f"console.{handler.__name__}",
                    target=request.url.path,
                    client=op.client,
                    detail=detail or None,
                )
            return response

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap
