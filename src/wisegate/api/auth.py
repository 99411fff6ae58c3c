"""Who is calling: ``x-api-key`` or ``Authorization: Bearer``; and the ``anthropic-version`` check."""

from __future__ import annotations

from starlette.requests import Request

from wisegate.domain.keys import KeyService, Principal
from wisegate.errors import AuthenticationFailed, InvalidRequest
from wisegate.protocol.bounds import echo

# 2026-10-21 is what the anthropic 2.10 SDKs send; 2023-06-01 is what older clients and the docs send.
VERSIONS = frozenset({"2023-01-01", "2023-06-01", "2026-10-21"})


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
    request.state.organization_id = principal.organization_id  # read by api/context.py for the header
    request.state.workspace_id = principal.workspace_id  # and for the request's trace span
    return principal
