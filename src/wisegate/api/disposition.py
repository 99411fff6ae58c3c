"""``Content-Disposition``: reading a multipart part's (``name``, ``filename``, RFC 5987 ``filename*``)
and writing a download's, so that any Unicode filename travels intact both ways.

Clients put UTF-8 in ``filename="…"`` as it is (browsers and httpx do) or percent-encode it in
``filename*=UTF-8''…`` (curl's ``filename*``, RFC 7578 §4.2 / RFC 6266); the latter wins when both are
sent. A download names the file twice: an ASCII stand-in for old clients and the exact name in
``filename*`` (always: a ``%`` in a plain name would be read as an escape by some clients).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import echo

_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.DOTALL)
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_EXTENDED = re.compile(r"^([A-Za-z0-9!#$%&+^_`{}~-]+)'[^']*'(.*)$", re.DOTALL)
_UNSAFE_ASCII = re.compile(r'[^\x20-\x7e]|["\\]')
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # of C0, DEL and C1, a header value may hold a tab


def decode_header(name: str, raw: bytes) -> str:
    """A part header's value, which must be UTF-8 (RFC 7578 §5.1) without control characters: 400
    naming the header otherwise (Latin-1 would store another name than the client's)."""
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"A multipart part's {echo(name)} header is not valid UTF-8.") from None
    if _CONTROL.search(value):
        raise InvalidRequest(f"A multipart part's {echo(name)} header must not contain control characters.")
    return value


def disposition_params(value: str) -> dict[str, str]:
    """The parameters of a ``Content-Disposition`` value, names lower-cased, ``filename*`` decoded
    into ``filename``; 400 when ``filename*`` is malformed."""
    params: dict[str, str] = {}
    extended: str | None = None
    for match in _PARAM.finditer(value):
        name, raw = match.group(1).lower(), match.group(2).strip()
        if name == "filename*":
            extended = raw
            continue
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = _ESCAPED.sub(r"\1", raw[1:-1])
        params.setdefault(name, raw)
    if extended is not None:
        params["filename"] = _decode_extended(extended.strip('"'))
    return params


def _decode_extended(value: str) -> str:
    found = _EXTENDED.match(value)
    charset = found.group(1).lower() if found else ""
    if found is None or charset not in ("utf-8", "iso-8859-1"):
        raise InvalidRequest("file: the part's filename* is not RFC 5987 (UTF-8''<percent-encoded name>)")
    try:
        return unquote(found.group(2), encoding=charset, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest(f"file: the part's filename* is not valid {charset.upper()}") from None


def attachment(filename: str) -> str:
    """The ``Content-Disposition`` of a download named ``filename`` (any Unicode)."""
    fallback = _UNSAFE_ASCII.sub("_", filename) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
