"""API and admin keys: creation (shown once), hashing, verification and the tenancy bootstrap."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from wisegate.domain.storable import storable_name
from wisegate.errors import AuthenticationFailed, NotFound
from wisegate.protocol.bounds import KEY_NAME_LENGTH, WORKSPACE_NAME_LENGTH, echo
from wisegate.protocol.messages import new_id
from wisegate.records.tenancy import ApiKey, Organization, Workspace
from wisegate.storage.repos import TenancyRepo

API_KEY_PREFIX = "sk-wg-api01-"
ADMIN_KEY_PREFIX = "sk-wg-admin01-"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key and the workspace and organization it acts in."""

    key: ApiKey

    @property
    def workspace_id(self) -> str:
        return self.key.workspace_id

    @property
    def organization_id(self) -> str:
        return self.key.organization_id


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    def __init__(self, repo: TenancyRepo, cache_seconds: float = 5.0) -> None:
        self._repo = repo
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._inflight: dict[str, asyncio.Future[ApiKey | None]] = {}

    async def bootstrap(self, name: str = "Default Organization") -> Organization:
        """The first organization, created with a ``Default`` workspace when the database is empty."""
        org = await self._repo.first_organization()
        if org is not None:
            return org
        now = datetime.now(UTC)
        org = Organization(id=str(uuid.uuid4()), name=name, created_at=now)
        workspace = Workspace(
            id=new_id("wrkspc"), organization_id=org.id, name="Default", created_at=now, archived_at=None
        )
        await self._repo.create_organization(org, workspace)
        return org

    async def create_workspace(self, organization_id: str, name: str) -> Workspace:
        storable_name("name", name, WORKSPACE_NAME_LENGTH)
        workspace = Workspace(
            id=new_id("wrkspc"),
            organization_id=organization_id,
            name=name,
            created_at=datetime.now(UTC),
            archived_at=None,
        )
        await self._repo.create_workspace(workspace)
        return workspace

    async def default_workspace(self, organization_id: str) -> Workspace:
        workspaces = await self._repo.list_workspaces(organization_id)
        if not workspaces:
            raise NotFound(f"organization {echo(organization_id)} has no workspace")
        return workspaces[0]

    async def create_key(
        self,
        workspace_id: str,
        name: str,
        *,
        admin: bool = False,
        created_by_user_id: str | None = None,
        service_account_id: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret; the secret is returned once and only its hash is stored."""
        storable_name("name", name, KEY_NAME_LENGTH)
        workspace = await self._repo.get_workspace(workspace_id)
        if workspace is None or workspace.archived_at is not None:
            raise NotFound(f"workspace {echo(workspace_id)} not found")
        secret = (ADMIN_KEY_PREFIX if admin else API_KEY_PREFIX) + secrets.token_urlsafe(32)
        key = ApiKey(
            id=new_id("apikey"),
            organization_id=workspace.organization_id,
            workspace_id=workspace.id,
            name=name,
            partial_key_hint=secret[:16] + "..." + secret[-4:],
            kind="admin" if admin else "api",
            status="active",
            created_at=datetime.now(UTC),
            created_by_user_id=created_by_user_id,
            service_account_id=service_account_id,
        )
        await self._repo.add_key(key, hash_key(secret))
        return key, secret

    async def set_status(self, key_id: str, status: str) -> ApiKey:
        key = await self._repo.set_key_status(key_id, status)
        if key is None:
            raise NotFound(f"api key {echo(key_id)} not found")
        self._cache.clear()
        return key

    async def update(self, key_id: str, *, name: str | None = None, status: str | None = None) -> ApiKey:
        """Rename a key and/or change its status; cached verifications are dropped at once."""
        if name is not None:
            storable_name("name", name, KEY_NAME_LENGTH)
        key = await self._repo.update_key(key_id, name=name, status=status)
        if key is None:
            raise NotFound(f"api key {echo(key_id)} not found")
        self._cache.clear()
        return key

    def forget_cached(self) -> None:
        """Drop every cached verification (after keys changed status in bulk)."""
        self._cache.clear()

    async def get(self, key_id: str) -> ApiKey | None:
        """A key by id, read from storage (not the verification cache): its current status."""
        return await self._repo.get_key(key_id)

    async def list_keys(self, organization_id: str) -> list[ApiKey]:
        return await self._repo.list_keys(organization_id)

    async def _lookup(self, key_hash: str, now: float) -> ApiKey | None:
        """One database read per key however many requests miss the cache at once (no stampede)."""
        pending = self._inflight.get(key_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ApiKey | None] = asyncio.get_running_loop().create_future()
        self._inflight[key_hash] = future
        try:
            key = await self._repo.key_by_hash(key_hash)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters (if any) re-raise it
            raise
        finally:
            del self._inflight[key_hash]
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_hash] = (now + self._cache_seconds, key)
        future.set_result(key)
        return key

    async def authenticate(
        self, secret: str | None, *, kind: str = "api", header: str = "x-api-key"
    ) -> Principal:
        """The principal for a presented secret of ``kind`` (``api``, ``admin`` or ``any``); 401 otherwise,
        naming the ``header`` the secret came in."""
        if not secret:
            raise AuthenticationFailed("x-api-key header is required")
        key_hash = hash_key(secret)
        now = time.monotonic()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > now:
            key = cached[1]
        else:
            key = await self._lookup(key_hash, now)
        if key is None or (kind != "any" and key.kind != kind):
            raise AuthenticationFailed(f"invalid {header}")
        if key.status != "active":
            raise AuthenticationFailed(f"this API key is {key.status}")
        return Principal(key)
