"""Single sign-on with OpenID Connect (authorization code flow with PKCE: ``authlib``'s client, ``joserfc``
for the ID token).

:meth:`SingleSignOn.start` makes the provider's authorization URL and a value for a short-lived cookie
holding the flow's ``state``, ``nonce`` and PKCE verifier (MAC'd with the console secret); the
provider sends the browser back to ``/console/sso/callback``, where :meth:`SingleSignOn.finish`
checks the state, exchanges the code, verifies the ID token (signature against the provider's JWKS,
issuer, audience, expiry, nonce) and returns who signed in. Which e-mail domains may sign in, and
whether a first sign-in needs a pending invite or creates the user, is the caller's policy
(``AccountService.sign_in_sso``) with the settings kept here.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from wisegate.domain.secret import ConsoleSecret, same
from wisegate.errors import PermissionDenied
from wisegate.settings import Settings

FLOW_SECONDS = 600
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")  # asymmetric only
FAILED = "Single sign-on did not complete: {}. Start again from the sign-in page."


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the provider says signed in."""

    email: str
    subject: str  # "<issuer> <sub>": stable even if the e-mail changes
    name: str


class SingleSignOn:
    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        secret: ConsoleSecret,
        *,
        allowed_domains: list[str],
        new_users: str,
        default_role: str,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._secret = secret
        self.allowed_domains = [d.lower().lstrip("@") for d in allowed_domains]
        self.new_users = new_users
        self.default_role = default_role
        self._metadata: dict[str, Any] | None = None
        self._jwks: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, secret: ConsoleSecret) -> SingleSignOn | None:
        if not settings.console_sso_issuer:
            return None
        assert settings.console_sso_client_id and settings.console_sso_client_secret
        return cls(
            settings.console_sso_issuer,
            settings.console_sso_client_id,
            settings.console_sso_client_secret,
            secret,
            allowed_domains=settings.console_sso_allowed_domains,
            new_users=settings.console_sso_new_users,
            default_role=settings.console_sso_default_role,
        )

    def _client(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            self._client_id,
            self._client_secret,
            scope="openid email profile",
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=15,
        )

    async def _discover(self) -> dict[str, Any]:
        if self._metadata is None:
            async with httpx.AsyncClient(timeout=15) as http:
                response = await http.get(f"{self.issuer}/.well-known/openid-configuration")
                response.raise_for_status()
                metadata: dict[str, Any] = response.json()
            if str(metadata.get("issuer", "")).rstrip("/") != self.issuer:
                raise PermissionDenied(FAILED.format("the provider names another issuer"))
            self._metadata = metadata
        return self._metadata

    async def _keys(self, refresh: bool = False) -> dict[str, Any]:
        if self._jwks is None or refresh:
            metadata = await self._discover()
            async with httpx.AsyncClient(timeout=15) as http:
                response = await http.get(metadata["jwks_uri"])
                response.raise_for_status()
                self._jwks = response.json()
        assert self._jwks is not None
        return self._jwks

    async def start(self, redirect_uri: str, next_path: str) -> tuple[str, str]:
        """The provider's authorization URL and the flow cookie's value."""
        try:
            metadata = await self._discover()
        except (httpx.HTTPError, ValueError) as exc:
            raise PermissionDenied(
                FAILED.format(f"the provider at {self.issuer} did not answer ({exc})")
            ) from None
        state, nonce, verifier = (secrets.token_urlsafe(24) for _ in range(3))
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
            )
        payload = f"{state}.{nonce}.{verifier}.{int(time.time()) + FLOW_SECONDS}.{next_path.encode().hex()}"
        return url, f"{payload}.{self._secret.mac('sso', payload)}"

    def next_path(self, cookie: str | None) -> str:
        parts = (cookie or "").split(".")
        try:
            return bytes.fromhex(parts[4]).decode() if len(parts) == 6 else "/console"
        except ValueError:
            return "/console"

    async def finish(self, cookie: str | None, state: str, code: str, redirect_uri: str) -> Identity:
        """Check the flow, exchange the code and verify the ID token; 403 with the reason otherwise."""
        parts = (cookie or "").split(".")
        if len(parts) != 6 or not same(parts[5], self._secret.mac("sso", ".".join(parts[:5]))):
            raise PermissionDenied(FAILED.format("this browser did not start it (or it took too long)"))
        expected_state, nonce, verifier, expires = parts[0], parts[1], parts[2], parts[3]
        if not expires.isdigit() or int(expires) < time.time():
            raise PermissionDenied(FAILED.format("it took longer than 10 minutes"))
        if not same(state, expected_state) or not code:
            raise PermissionDenied(FAILED.format("the answer does not belong to this sign-in"))
        try:
            metadata = await self._discover()
            async with self._client(redirect_uri) as client:
                token = await client.fetch_token(
                    metadata["token_endpoint"],
                    code=code,
                    code_verifier=verifier,
                    grant_type="authorization_code",
                )
            id_token = str(token.get("id_token") or "")
            if not id_token:
                raise PermissionDenied(FAILED.format("the provider sent no ID token"))
            claims = await self._verify(id_token, nonce)
        except PermissionDenied:
            raise
        except (httpx.HTTPError, JoseError, ValueError, KeyError) as exc:
            raise PermissionDenied(FAILED.format(f"{type(exc).__name__}: {exc}")) from None
        email = str(claims.get("email") or "").strip().lower()
        if not email:
            raise PermissionDenied(FAILED.format("the provider gave no e-mail address (scope 'email')"))
        if claims.get("email_verified") is not True:  # JSON true only: not "false", "true", 1 or missing
            raise PermissionDenied(
                f"Single sign-on refused: the e-mail {email} is not verified by the provider."
            )
        if self.allowed_domains and email.rsplit("@", 1)[-1] not in self.allowed_domains:
            raise PermissionDenied(
                f"Single sign-on refused: {email} is not in an allowed domain "
                f"({', '.join(self.allowed_domains)})."
            )
        name = str(claims.get("name") or claims.get("preferred_username") or email.split("@")[0])
        return Identity(email, f"{self.issuer} {claims['sub']}", name[:256])

    async def _verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            token = jwt.decode(
                id_token, KeySet.import_key_set(cast(Any, await self._keys())), algorithms=ALGORITHMS
            )
        except JoseError:  # the provider may have rotated its keys since we fetched them
            token = jwt.decode(
                id_token,
                KeySet.import_key_set(cast(Any, await self._keys(refresh=True))),
                algorithms=ALGORITHMS,
            )
        jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self._client_id},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(token.claims)
        return dict(token.claims)
