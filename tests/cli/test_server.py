"""``wisegate serve``'s uvicorn server: the heap alive after startup is frozen out of the collector,
and young collections wait for 10,000 net allocations."""

from __future__ import annotations

import gc
import threading
import time

import uvicorn
from starlette.applications import Starlette

from wisegate.cli.server import _Server


def test_startup_freezes_what_is_alive() -> None:
    server = _Server(uvicorn.Config(Starlette(), host="127.0.0.1", port=0, log_level="warning"), None, 30, 0)
    assert gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started  # frozen right after the app started
        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold() == (10_000, *thresholds[1:])
    finally:
        server.should_exit = True
        thread.join(10)
        gc.unfreeze()
        gc.set_threshold(*thresholds)
