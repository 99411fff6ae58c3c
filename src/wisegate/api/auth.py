"""Who is calling: ``x-api-key`` or ``Authorization: Bearer``; and the ``anthropic-version`` check."""

from __future__ import annotations

import re

from starlette.requests import Request

from wisegate.domain.keys import KeyService, Principal
from wisegate.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from wisegate.protocol.bounds import echo

# 2026-10-21 is what the anthropic 2.10 SDKs send; 2023-06-01 is what older clients and the docs send.
VERSIONS = frozenset({"2023-01-01", "2023-06-01", "2026-10-21"})
WORKSPACE_HEADER = "anthropic-workspace-id"  # the SDKs' ``workspace_id`` option
_WORKSPACE_ID = re.compile(r"wrkspc_[A-Za-z0-9]{1,64}")


def presented_key(request: Request) -> tuple[str | None, str]:
    """The secret the caller presents and the header it came in (named in a 401): ``x-api-key``, else
    an ``Authorization: Bearer`` token."""
    key = request.headers.get("x-api-key")
    if key:
        return key, "x-api-key"
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), "Authorization: Bearer"
    return None, "x-api-key"


def check_version(request: Request) -> None:
    """``anthropic-version`` is optional (absent means 2023-06-01); an unknown value is a 400."""
    version = request.headers.get("anthropic-version")
    if version is not None and version not in VERSIONS:
        raise InvalidRequest(f'anthropic-version: "{echo(version)}" is not a valid version')


async def authenticate(request: Request, keys: KeyService, *, kind: str = "api") -> Principal:
    """The caller's principal; 401 unless it presents an active key of ``kind`` (``api``: an API key;
    an admin key is told what it is and what to use instead, as the Admin API tells an API key)."""
    check_version(request)
    secret, header = presented_key(request)
    if secret is None and request.headers.get("authorization", "").strip():
        raise AuthenticationFailed(
            "Authorization: only 'Bearer <key>' is accepted; or send the key in the x-api-key header"
        )
    principal = await keys.authenticate(secret, kind="any" if kind == "api" else kind, header=header)
    if kind == "api" and principal.key.kind != "api":
        raise AuthenticationFailed(
            f"This is an Admin API key (sk-wg-admin01-…); {echo(request.url.path)} needs an API key "
            "(sk-wg-api01-…). Create one with: wisegate keys create --name NAME"
        )
    await check_workspace(request, principal, keys)
    request.state.organization_id = principal.organization_id  # read by api/context.py for the header
    request.state.workspace_id = principal.workspace_id  # and for the request's trace span
    return principal


async def check_workspace(request: Request, principal: Principal, keys: KeyService) -> None:
    """``anthropic-workspace-id``, when sent, must name the API key's own workspace (``default``: the
    organization's default workspace, as the SDK's credentials allow): a key acts in its workspace
    only, so another one is a 403 (the same answer whether or not that workspace exists); an id that
    cannot be a workspace's is a 400. An Admin API key acts for the whole organization: only the
    header's form is checked."""
    claimed = request.headers.get(WORKSPACE_HEADER)
    if claimed is None:
        return
    if claimed != "default" and _WORKSPACE_ID.fullmatch(claimed) is None:
        raise InvalidRequest(
            f'{WORKSPACE_HEADER}: "{echo(claimed)}" is not a workspace id (wrkspc_ followed by letters and '
            'digits, or "default"); send your workspace\'s id, or leave the header out'
        )
    if principal.key.kind != "api":
        return
    if claimed == "default":
        claimed = (await keys.default_workspace(principal.organization_id)).id
    if claimed != principal.workspace_id:
        raise PermissionDenied(
            f"{WORKSPACE_HEADER}: this API key belongs to another workspace ({principal.workspace_id}), "
            f"not {claimed}; use a key created in {claimed}, or leave the header out"
        )
