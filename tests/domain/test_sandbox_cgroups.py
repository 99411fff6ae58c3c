"""Call groups: the limits written for cgroup v2 (not offered by this host: checked on a plain tree) and
v1 (this host's, when writable)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from wisegate.domain.code_execution.cgroups import CallLimits, Cgroups, _try_v2

LIMITS = CallLimits(memory_bytes=256 * 1024**2, processes=32, cpus=1.5)


def test_v2_limits_are_written_in_its_format(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    assert _try_v2(tmp_path) is None
    group = Cgroups(2, {"": tmp_path}).create(LIMITS)
    (directory,) = group.directories
    assert directory.parent == tmp_path and directory.name.startswith("wisegate-sandbox-")
    assert (directory / "memory.max").read_text() == str(LIMITS.memory_bytes)
    assert (directory / "pids.max").read_text() == "32"
    assert (directory / "cpu.max").read_text() == "150000 100000"
    assert group.procs == [str(directory / "cgroup.procs")]


def test_v2_without_delegated_controllers_says_which(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu io\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    assert _try_v2(tmp_path) == "the controllers memory, pids are not delegated to it"


def test_a_v1_group_holds_the_limits_and_is_removed() -> None:
    found = Cgroups.detect()
    if not isinstance(found, Cgroups) or found.version != 1 or os.geteuid() != 0:
        pytest.skip(f"no writable cgroup v1 here: {found}")
    group = found.create(LIMITS)
    memory, pids, cpu = group.directories
    assert int((memory / "memory.limit_in_bytes").read_text()) == LIMITS.memory_bytes
    assert (pids / "pids.max").read_text().strip() == "32"
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "150000"
    assert group.remove() and not any(d.exists() for d in group.directories)


def test_v2_server_alone_in_its_group_moves_into_a_leaf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    (tmp_path / "cgroup.procs").write_text(f"{os.getpid()}\n")
    from wisegate.domain.code_execution import cgroups

    real = cgroups._write
    moved: list[Path] = []

    def write(path: Path, value: object) -> None:  # the kernel's EBUSY until the server has left
        if path.name == "cgroup.subtree_control" and not moved:
            raise OSError(errno.EBUSY, "Device or resource busy")
        if path.name == "cgroup.procs":
            moved.append(path)
        real(path, value)

    monkeypatch.setattr(cgroups, "_write", write)
    assert _try_v2(tmp_path) is None
    assert moved == [tmp_path / "wisegate-server" / "cgroup.procs"]
    (tmp_path / "cgroup.procs").write_text(f"{os.getpid()}\n1\n")
    moved.clear()
    assert "other processes share the server's cgroup" in (_try_v2(tmp_path) or "")
