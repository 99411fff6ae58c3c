"""The console secret: the HMAC key of CSRF tokens and invite links.

``WISEGATE_CONSOLE_SECRET`` or, when unset, 32 random bytes written once to ``<data_dir>/console-secret``
(mode 0600) on first use. Every process of a deployment must share it (set the variable, or share the
data directory); replacing it invalidates open forms and pending invite links (the Members page then
offers a new link).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_FILE = "console-secret"


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
    # Written in full under a name of its own, then linked into place: a process that loses the race
    # to create it reads the winner's whole secret, never a file still being written.
    draft = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(value)
        os.link(draft, path)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    finally:
        draft.unlink()
    return value


class ConsoleSecret:
    """The secret, read (or made) the first time a MAC is needed, not when the app is built."""

    def __init__(self, configured: str | None, data_dir: Path) -> None:
        self._configured = configured
        self._data_dir = data_dir
        self._value: bytes | None = None

    def mac(self, purpose: str, data: str) -> str:
        """HMAC-SHA256 of ``data`` for one ``purpose`` (so a MAC made for one use never fits another)."""
        if self._value is None:
            self._value = load_secret(self._configured, self._data_dir)
        digest = hmac.new(self._value, f"{purpose}|{data}".encode(), hashlib.sha256).digest()
        return digest.hex()


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of a client-sent string (which may hold any characters)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def digest(token: str) -> str:
    """What is stored of a bearer token (a session cookie, an invite link): its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
