"""Request bodies are read as sent: a compressed one is refused before any endpoint reads it.

No endpoint decompresses, so a body sent with ``Content-Encoding: gzip`` (or ``Transfer-Encoding:
gzip, chunked``) would otherwise reach the JSON parser as compressed bytes and be answered as invalid
JSON, or be stored as an upload of the wrong bytes. It is a 400 saying what to do instead, answered by
``RequestContext`` before any route (the direct ones included).
"""

from __future__ import annotations

from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import echo

_IDENTITY = {"", "identity"}
_CHUNKED = {"", "chunked"}


def _codings(value: bytes) -> set[str]:
    return {c.strip().lower() for c in value.decode("latin-1").split(",")}


def compressed_body(headers: list[tuple[bytes, bytes]]) -> InvalidRequest | None:
    for name, value in headers:
        if name == b"content-encoding" and not _codings(value) <= _IDENTITY:
            return InvalidRequest(
                f"Content-Encoding {echo(value.decode('latin-1'))!r} is not supported: send the request "
                "body uncompressed"
            )
        if name == b"transfer-encoding" and not _codings(value) <= _CHUNKED:
            return InvalidRequest(
                f"Transfer-Encoding {echo(value.decode('latin-1'))!r} is not supported: send the request "
                "body uncompressed (chunked alone is fine)"
            )
    return None
