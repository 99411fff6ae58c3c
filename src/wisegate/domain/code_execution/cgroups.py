"""A control group per sandbox call: memory (and swap), process and CPU limits the kernel enforces.

``Cgroups.detect()`` looks at the server's own cgroup and keeps the first way that works:

* cgroup v2, when the server's cgroup has the ``memory``, ``pids`` and ``cpu`` controllers and they
  can be enabled for its children (a delegated cgroup: systemd ``Delegate=yes``, a container runtime's;
  a server alone in it moves itself into a leaf, ``wisegate-server``, first);
* cgroup v1, when the ``memory``, ``pids`` and ``cpu`` hierarchies are mounted and the server may
  create groups under its own group in each (a server running as root, typically).

Each call's group is a child of the server's group (so the server's own limits still apply above it),
named ``wisegate-sandbox-<id>``; the sandboxed process joins it before ``bwrap`` starts, so everything
it starts is inside. ``remove`` kills what is left and deletes the group.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CONTROLLERS = ("memory", "pids", "cpu")
_PERIOD_US = 100_000
_PREFIX = "wisegate-sandbox-"
_STALE_SECONDS = (
    600.0  # a call's group is joined within moments of being made; far older and empty: left over
)


@dataclass(frozen=True, slots=True)
class CallLimits:
    memory_bytes: int
    processes: int
    cpus: float


@dataclass(slots=True)
class CallGroup:
    """One call's group: ``procs`` are the files a process writes its pid to in order to join it."""

    directories: Sequence[Path]
    procs: Sequence[str]

    def join(self) -> None:
        """Move the calling process into the group (run in the child, before exec)."""
        pid = str(os.getpid()).encode()
        for path in self.procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def remove(self) -> bool:
        """Kill the group's processes and delete it; ``False`` if some of it is still there."""
        for _ in range(50):
            left = False
            for directory in self.directories:
                if not directory.exists():
                    continue
                for pid in _pids(directory):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    left = True
            if not left:
                return True
            time.sleep(0.02)
        return False


@dataclass(frozen=True, slots=True)
class Cgroups:
    """Where call groups are made: ``version`` 2 with one parent, or 1 with a parent per controller."""

    version: int
    parents: dict[str, Path]

    @classmethod
    def detect(cls) -> Cgroups | str:
        """The usable cgroups of this host, or why there are none."""
        mounts = _mounts()
        own = _own_groups()
        reasons = []
        v2 = mounts.get("cgroup2")
        if v2 and "" in own:
            parent = _join(v2, own[""])
            reason = _try_v2(parent)
            if reason is None:
                return cls(2, {"": parent})
            reasons.append(f"cgroup v2 at {parent}: {reason}")
        else:
            reasons.append("cgroup v2: not mounted")
        parents = {}
        for controller in _CONTROLLERS:
            mount = mounts.get(controller)
            if mount is None or controller not in own:
                reasons.append(f"cgroup v1: no '{controller}' hierarchy is mounted")
                break
            parents[controller] = _join(mount, own[controller])
        else:
            reason = _try_v1(parents)
            if reason is None:
                return cls(1, parents)
            reasons.append(f"cgroup v1: {reason}")
        return "; ".join(reasons)

    def create(self, limits: CallLimits) -> CallGroup:
        """A new group with ``limits``; the caller ``remove``s it."""
        name = _PREFIX + uuid.uuid4().hex[:16]
        if self.version == 2:
            directory = self.parents[""] / name
            directory.mkdir()
            group = CallGroup([directory], [str(directory / "cgroup.procs")])
            try:
                _write(directory / "memory.max", limits.memory_bytes)
                if (directory / "memory.swap.max").exists():
                    _write(directory / "memory.swap.max", 0)
                _write(directory / "pids.max", limits.processes)
                _write(directory / "cpu.max", f"{int(limits.cpus * _PERIOD_US)} {_PERIOD_US}")
            except BaseException:
                group.remove()
                raise
            return group
        directories = [self.parents[c] / name for c in _CONTROLLERS]
        group = CallGroup(directories, [str(d / "cgroup.procs") for d in directories])
        try:
            for directory in directories:
                directory.mkdir()
            memory, pids, cpu = directories
            _write(memory / "memory.limit_in_bytes", limits.memory_bytes)
            if (memory / "memory.memsw.limit_in_bytes").exists():  # memory + swap: no swap on top
                _write(memory / "memory.memsw.limit_in_bytes", limits.memory_bytes)
            _write(pids / "pids.max", limits.processes)
            _write(cpu / "cpu.cfs_period_us", _PERIOD_US)
            _write(cpu / "cpu.cfs_quota_us", int(limits.cpus * _PERIOD_US))
        except BaseException:
            group.remove()
            raise
        return group

    def remove_stale(self, older_than: float = _STALE_SECONDS) -> int:
        """Delete the empty call groups left under our parents by a server that was killed (so it
        could not remove them); only ours (by name prefix) and only ones older than ``older_than``
        seconds, so that a group another server just made for a call it is starting stays. A group
        with processes in it cannot be removed (the kernel refuses) and is left. Returns how many."""
        removed = 0
        cutoff = time.time() - older_than
        for parent in self.parents.values():
            with contextlib.suppress(OSError):
                for entry in os.scandir(parent):
                    if not entry.name.startswith(_PREFIX) or not entry.is_dir(follow_symlinks=False):
                        continue
                    try:
                        if entry.stat(follow_symlinks=False).st_mtime > cutoff or _pids(Path(entry.path)):
                            continue
                        os.rmdir(entry.path)
                        removed += 1
                    except OSError:
                        continue
        return removed

    def describe(self) -> str:
        where = ", ".join(str(p) for p in self.parents.values())
        return f"cgroup v{self.version} under {where}"


def _try_v2(parent: Path) -> str | None:
    try:
        available = (parent / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return exc.strerror or str(exc)
    missing = [c for c in _CONTROLLERS if c not in available]
    if missing:
        return f"the controllers {', '.join(missing)} are not delegated to it"
    try:
        _enable(parent)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            return f"cannot enable controllers for child groups ({exc.strerror})"
        # A cgroup with processes cannot enable controllers for children ("no internal processes"):
        # when the server is alone in its delegated group, it moves into a leaf of its own first.
        if _pids(parent) != [os.getpid()]:
            return (
                "cannot enable controllers for child groups: other processes share the server's cgroup "
                "(give the server a delegated cgroup of its own)"
            )
        try:
            leaf = parent / "wisegate-server"
            leaf.mkdir(exist_ok=True)
            _write(leaf / "cgroup.procs", os.getpid())
            _enable(parent)
        except OSError as again:
            return f"cannot enable controllers for child groups ({again.strerror})"
    return _probe([parent])


def _enable(parent: Path) -> None:
    enabled = (parent / "cgroup.subtree_control").read_text().split()
    for controller in _CONTROLLERS:
        if controller not in enabled:
            _write(parent / "cgroup.subtree_control", f"+{controller}")


def _try_v1(parents: dict[str, Path]) -> str | None:
    return _probe(list(parents.values()))


def _probe(parents: list[Path]) -> str | None:
    """``None`` if a child group can be created (and removed) under every parent."""
    name = _PREFIX + "probe-" + uuid.uuid4().hex[:8]
    made = []
    try:
        for parent in parents:
            (parent / name).mkdir()
            made.append(parent / name)
    except OSError as exc:
        return f"cannot create a group under {parent} ({exc.strerror})"
    finally:
        for directory in made:
            with contextlib.suppress(OSError):
                directory.rmdir()
    return None


def _mounts() -> dict[str, Path]:
    """Mount points by controller (``"cgroup2"`` for the unified hierarchy); mounted at their root only."""
    found: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        head, _, tail = line.partition(" - ")
        fields, extra = head.split(), tail.split()
        if len(fields) < 5 or len(extra) < 3 or fields[3] != "/":
            continue
        kind, options = extra[0], extra[2].split(",")
        if kind == "cgroup2":
            found.setdefault("cgroup2", Path(fields[4]))
        elif kind == "cgroup":
            for controller in _CONTROLLERS:
                if controller in options:
                    found.setdefault(controller, Path(fields[4]))
    return found


def _own_groups() -> dict[str, str]:
    """The server's group path by controller (``""`` for v2), from ``/proc/self/cgroup``."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if not controllers:
                own[""] = path
            for controller in controllers.split(","):
                own[controller] = path
    return own


def _join(mount: Path, path: str) -> Path:
    return mount / path.lstrip("/")


def _write(path: Path, value: object) -> None:
    path.write_text(str(value))


def _pids(directory: Path) -> list[int]:
    try:
        return [int(line) for line in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
