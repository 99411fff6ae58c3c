"""Page tokens (``next_page``, ``page``): opaque to clients, read back as strictly as a request value.

A client may send any string back as a token, so what one decodes to is checked the way a request value
is: its text is UTF-8 without NUL, an integer is ASCII digits that fit the 64-bit columns it is compared
with (``int`` alone takes ``"1_000"``, ``" 7"`` and other scripts' digits, and 2**63 overflows the
database driver), a moment lies in the range the tables hold. Each reader returns
``None`` for a token we cannot have issued; the caller answers 400 naming the parameter
(:func:`problem`).

    token = encode(f"{created_at.isoformat()}|{row_id}", prefix="page_")
    text = decode(token, prefix="page_")          # None: not one of ours
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from wisegate.protocol.bounds import echo

INT64_MAX = 2**63 - 1
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def encode(text: str, *, prefix: str = "") -> str:
    """``text`` as an opaque token: ``prefix`` and its unpadded URL-safe base64."""
    return prefix + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str, *, prefix: str = "") -> str | None:
    """The text :func:`encode` made ``token`` from, or ``None`` if no text makes it."""
    if not token.startswith(prefix) or not token.isascii():
        return None
    raw = token[len(prefix) :]
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return None if "\x00" in text else text


def integer(text: str) -> int | None:
    """``text`` as a non-negative 64-bit integer in ASCII digits, else ``None``."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= INT64_MAX else None


def moment(text: str) -> datetime | None:
    """``text`` as an ISO 8601 moment from 1970 up to 9000, in UTC (without a zone: UTC, as SQLite
    hands stored moments back), else ``None``."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    try:
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        return None
    return value if EARLIEST <= value < LATEST else None


def problem(name: str, token: str, what: str = "this list") -> str:
    """The 400 message for a token of parameter ``name`` that is none of ours."""
    return f"{name}: invalid page cursor '{echo(token)}': it is not a page token of {what}"
