"""``wisegate sandbox check``: whether the code execution sandbox works on this host."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import click

from wisegate.cli.services import load_settings

# What the check runs inside the sandbox: each line must print its expected word.
_PROBES = {
    "python3": ("python3 -c 'print(\"python3\")'", "python3"),
    "no network": (
        'python3 -c \'import socket\ntry:\n socket.create_connection(("127.0.0.1", 1), timeout=1)\n'
        'except OSError as e:\n print("isolated" if e.errno in (111, 101, 99) else e)\'',
        "isolated",
    ),
    "own PID namespace": ("test $(ls /proc | grep -c '^[0-9]') -lt 10 && echo own", "own"),
    "read-only system": ("touch /usr/probe 2>/dev/null || echo readonly", "readonly"),
}


@click.group()
def sandbox() -> None:
    """The code execution sandbox (docs/code-execution.md)."""


@sandbox.command("check")
def sandbox_check() -> None:
    """Run a few probes in the sandbox and report whether code execution works here (exit 1 if not)."""
    from wisegate.services import sandbox_of

    box = sandbox_of(load_settings())
    problem = box.available()
    if problem:
        click.echo(f"sandbox: unavailable: {problem}")
        sys.exit(1)
    failed = asyncio.run(_probe(box))
    limits = box.limits
    click.echo(
        f"limits: cpu {limits.cpu_seconds}s, wall {limits.wall_seconds}s, "
        f"memory {limits.memory_bytes} bytes, "
        f"processes {limits.processes}, open files {limits.open_files}, disk {limits.disk_bytes} bytes, "
        f"cpus {limits.cpus}, {limits.max_running} calls at once"
    )
    click.echo(f"enforced by: {box.describe()}")
    click.echo("sandbox: unavailable" if failed else "sandbox: ok")
    sys.exit(1 if failed else 0)


async def _probe(box: object) -> int:
    from wisegate.domain.code_execution.sandbox import Sandbox

    assert isinstance(box, Sandbox)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="wisegate-sandbox-check-") as directory:
        root = Path(directory) / "container"
        box.prepare(root)
        try:
            for name, (command, expected) in _PROBES.items():
                result = await box.run(root, ["/bin/bash", "-c", command], 0)
                ok = result.stdout.strip() == expected
                failed += not ok
                detail = "" if ok else f": {(result.stdout + result.stderr).strip()[:200]}"
                click.echo(f"{name}: {'ok' if ok else 'FAILED'}{detail}")
        finally:
            box.release(root)
    return failed
