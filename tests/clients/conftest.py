"""Real client programs from the npm registry, installed on first use into ``tests/clients/node_modules``.

``package.json`` and ``package-lock.json`` pin them (Claude Code, the TypeScript SDK); ``npm ci`` runs
once when the folder is missing or stale, so a fresh clone (and CI) installs them by itself.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"


def _installed() -> bool:
    stamp = NODE_MODULES / ".package-lock.json"
    lock = HERE / "package-lock.json"
    return stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """``tests/clients/node_modules``, installed with ``npm ci`` when missing; fails loudly without npm."""
    if not _installed():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install the client programs of tests/clients (Node.js 20+)")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True, timeout=900
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed in {HERE}:\n{result.stdout}\n{result.stderr}")
    return NODE_MODULES
