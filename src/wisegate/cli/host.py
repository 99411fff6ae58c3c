"""Per-host services of ``wisegate serve``: what the command's parent process starts once for the
host before any API worker starts, and stops after the last one has exited (``cli/supervisor.py``).

The embedded model is not one of them yet: each API worker loads its own copy (``--workers 4``: four
copies in memory, each generating on its own threads). A model runner shared by the workers of a host
starts here when it exists.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wisegate.domain.secret import load_secret
from wisegate.settings import Settings
from wisegate.telemetry import metrics


@contextmanager
def host_services(settings: Settings, workers: int) -> Iterator[None]:
    """Start what the API processes of this host share; stop it once they are gone.

    - The console secret, when it lives in the data directory: made here once, so that workers never
      race to make one each.
    - With more than one worker: the directory in which ``prometheus_client`` (multi-process mode)
      keeps every worker's values, so that ``/metrics`` of any of them reports the server as one — a
      fresh one per server, removed at exit, unless ``PROMETHEUS_MULTIPROC_DIR`` names one already.
    - The model runner of each ``local`` backend (``backends/local/supervisor.py``).
    """
    from wisegate.backends.local.supervisor import start_model_runners, stop_model_runners

    load_secret(settings.console_secret, settings.data_dir)
    try:
        # One model runner per local backend for the host: every worker reaches it by its socket.
        runners = start_model_runners(settings)
    except RuntimeError as exc:
        print(f"wisegate: {exc}", file=sys.stderr)
        sys.exit(2)
    directory: Path | None = None
    if workers > 1 and not os.environ.get(metrics.MULTIPROC_ENV):
        directory = Path(tempfile.mkdtemp(prefix="wisegate-metrics-"))
        metrics.prepare_directory(directory)
    try:
        yield
    finally:
        stop_model_runners(runners)
        if directory is not None:
            os.environ.pop(metrics.MULTIPROC_ENV, None)
            shutil.rmtree(directory, ignore_errors=True)
