"""Running the app under uvicorn for ``wisegate serve``."""

from __future__ import annotations

import gc
import socket
import sys

import uvicorn
from starlette.types import ASGIApp

_YOUNG_THRESHOLD = 10_000


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Requests in flight keep a few thousand young objects alive, so at the default threshold (700
        # net allocations) a young collection ran every ~9 requests only to promote them: ~10 µs of
        # CPU per request. Garbage without cycles is freed at once either way.
        gc.set_threshold(_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        # What is alive once the app has started (modules, schemas, pools: ~130k objects) lives as long
        # as the process: keep it out of the cyclic collector's full passes. Under load those ran about
        # once a second and walked all of it (65–100 ms each: ~40 µs of CPU per relayed request at
        # 2,000 requests/s, and a stall for every request in flight).
        gc.collect()
        gc.freeze()


def run_server(app: ASGIApp, host: str, port: int) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (what ``uvicorn.run`` does, with the collector tuned at startup)."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = _Server(config)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE
