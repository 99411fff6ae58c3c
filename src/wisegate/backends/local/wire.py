"""Frames between API workers, the runner supervisor and the model runner: a 4-byte big-endian length,
then one JSON object. The same framing on asyncio streams (API worker, supervisor) and on a blocking
socket (the runner's threads)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

Message = dict[str, Any]

_LENGTH = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


def encode(message: Message) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return _LENGTH.pack(len(body)) + body


async def read(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or ``None`` at a clean end of the stream (the peer closed or died)."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        (size,) = _LENGTH.unpack(head)
        if size > MAX_FRAME:
            raise ConnectionError(f"a frame of {size} bytes is past the limit")
        body = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return None
    message: Message = json.loads(body)
    return message


def recv(sock: socket.socket) -> Message | None:
    """Blocking :func:`read` on a plain socket."""
    head = _recv_exactly(sock, _LENGTH.size)
    if head is None:
        return None
    (size,) = _LENGTH.unpack(head)
    body = _recv_exactly(sock, size)
    if body is None:
        return None
    message: Message = json.loads(body)
    return message


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        try:
            chunk = sock.recv(min(size, 1 << 20))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
