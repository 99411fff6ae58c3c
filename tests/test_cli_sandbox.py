"""``wisegate sandbox check`` reports whether the code execution sandbox works here."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from wisegate.cli import main


def test_sandbox_check_passes_here() -> None:
    result = CliRunner().invoke(main, ["sandbox", "check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for probe in ("python3", "no network", "own PID namespace", "read-only system"):
        assert f"{probe}: ok" in lines
    assert lines[-1] == "sandbox: ok" and "memory 2147483648 bytes" in result.output
    assert "cpus 1.0, 4 calls at once" in result.output
    enforced = next(line for line in lines if line.startswith("enforced by: "))
    assert enforced.startswith("enforced by: hard limits: cgroup v"), enforced  # this host has cgroups
    assert enforced.endswith(", a tmpfs per container")


def test_sandbox_check_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    result = CliRunner().invoke(main, ["sandbox", "check"])
    assert result.exit_code == 1
    assert (
        "sandbox: unavailable: 'bwrap' is not installed (Debian: apt-get install bubblewrap)" in result.output
    )
