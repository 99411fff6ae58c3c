"""The console's signed session cookie and its CSRF tokens.

A login stores ``{"key": <admin key id>, "sid": <random>, "exp": <epoch seconds>}`` in a cookie,
base64url-encoded and followed by its HMAC-SHA256 under the console secret. Nothing secret is in the
cookie: the admin key's id names the key, whose status is read again on every request (a disabled or
archived admin key ends its sessions at once). The CSRF token of a session is the HMAC of its ``sid``:
forms carry it, and it is worthless without the session it belongs to.

The secret is ``WISEGATE_CONSOLE_SECRET`` or, when unset, 32 random bytes written once to
``<data_dir>/console-secret`` (mode 0600); deleting that file logs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE = "wisegate_console"
LOGIN_COOKIE = "wisegate_console_login"  # double-submit token of the login form (login CSRF)
SECRET_FILE = "console-secret"


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str
    sid: str
    expires_at: int


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret, else the one kept in the data dir (created on first use)."""
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as file:
        file.write(value)
    return value


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of a client-sent string (which may hold any characters)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    def __init__(self, secret: bytes, lifetime_seconds: int) -> None:
        self._secret = secret
        self.lifetime_seconds = lifetime_seconds

    def _mac(self, purpose: str, data: str) -> str:
        return _b64(hmac.new(self._secret, f"{purpose}|{data}".encode(), hashlib.sha256).digest())

    def issue(self, key_id: str, now: float | None = None) -> tuple[Session, str]:
        """A new session for an admin key, and its cookie value."""
        now = time.time() if now is None else now
        session = Session(key_id, secrets.token_urlsafe(16), int(now) + self.lifetime_seconds)
        payload = _b64(json.dumps({"key": key_id, "sid": session.sid, "exp": session.expires_at}).encode())
        return session, f"{payload}.{self._mac('session', payload)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, mac = cookie.split(".")
        if not same(mac, self._mac("session", payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(str(data["key"]), str(data["sid"]), int(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= (time.time() if now is None else now):
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return self._mac("csrf", session.sid)

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return bool(token) and same(str(token), self.csrf_token(session))
