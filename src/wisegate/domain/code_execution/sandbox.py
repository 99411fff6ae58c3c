"""Run one command in a bubblewrap sandbox over a container's directory.

The sandbox sees a read-only system image (the host's ``/usr`` and the extra read-only paths an
operator configures), the container's own writable directories and nothing else of the host::

    /home/user                  the working directory and $HOME       (<container>/home)
    /tmp                        scratch, on disk like the rest         (<container>/tmp)
    /mnt/user-data/uploads      files placed by ``container_upload``   (<container>/uploads)
    /mnt/user-data/outputs      files written here become Files        (<container>/outputs)
    /skills/<directory>/        the request's skills, read-only        (<container>/skills)

Namespaces: all of them (``--unshare-all``): no network (only a loopback of its own), a new PID
namespace with its own ``/proc``, no environment but ``PATH``, ``HOME``, ``LANG`` and ``TMPDIR``.

Limits the kernel enforces ("hard limits", the default): each call runs in its own control group
(``cgroups``: memory with no swap on top, processes, CPU share) and the container's directory is a
size- and inode-limited tmpfs (``disks``); at most ``max_running`` calls run at once, the others wait.
Wall time by killing the sandbox (its PID namespace dies with it, so nothing it started outlives the
call). CPU seconds, address space, processes, open files and file size are rlimits on top. When the host
offers no usable cgroup or the server may not mount a tmpfs, the sandbox is unavailable unless the
operator allows soft limits: then the rlimits alone bound a call, and a watchdog that measures the
container's directory while the command runs (killing it past the quota) bounds its disk. The
``processes`` rlimit is RLIMIT_NPROC, which counts the sandbox user's tasks: a server running as root
runs bwrap privileged (no user namespace) and the command as an unprivileged user (``sandbox_uid``,
through ``setpriv`` with every capability dropped); any other server runs the command as itself in a
user namespace, its own tasks added to the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from wisegate.domain.code_execution import disks
from wisegate.domain.code_execution.cgroups import CallGroup, CallLimits, Cgroups

log = logging.getLogger("wisegate.sandbox")

WRITABLE = ("home", "tmp", "uploads", "outputs")
MOUNTS = {
    "home": "/home/user",
    "tmp": "/tmp",
    "uploads": "/mnt/user-data/uploads",
    "outputs": "/mnt/user-data/outputs",
}
SKILLS_DIR = "/skills"
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime", "/etc/mime.types")
_OUTPUT_CAP = 64 * 1024  # bytes of stdout and of stderr kept per call
MAX_ENTRIES = 100_000  # files and directories a container may hold
_WATCH_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    cpu_seconds: int = 60
    wall_seconds: float = 120.0
    memory_bytes: int = 2 * 1024**3
    processes: int = 128
    open_files: int = 1024
    disk_bytes: int = 1024**3
    cpus: float = 1.0
    max_running: int = 4


@dataclass(slots=True)
class RunResult:
    stdout: str
    stderr: str
    return_code: int
    seconds: float
    timed_out: bool = False
    disk_exceeded: bool = False  # the call went past the quota (soft) or filled the disk (hard)
    disk_full: bool = False  # the container's disk is full after the call
    truncated: bool = False


@dataclass(slots=True)
class Sandbox:
    """Runs commands over container directories; ``bwrap`` must be on ``PATH``."""

    limits: SandboxLimits = field(default_factory=SandboxLimits)
    uid: int = 65534
    ro_binds: Sequence[str] = ()
    python_path: Sequence[str] = ()
    bwrap: str = "bwrap"
    allow_soft_limits: bool = False
    _hard: Cgroups | str | None = field(default=None, init=False)
    _running: _Slots | None = field(default=None, init=False)

    def available(self) -> str | None:
        """Why the sandbox cannot run here, or ``None`` when it can."""
        if shutil.which(self.bwrap) is None:
            return f"'{self.bwrap}' is not installed (Debian: apt-get install bubblewrap)"
        if self.as_other_user and not os.path.exists("/usr/bin/setpriv"):
            return "/usr/bin/setpriv is not installed (Debian: util-linux)"
        problem = self.soft_reason()
        if problem is not None and not self.allow_soft_limits:
            return (
                f"its limits cannot be enforced on this host: {problem}. Run the server as root on a host "
                "with cgroups (or a delegated cgroup v2), or set WISEGATE_SANDBOX_ALLOW_SOFT_LIMITS=true to "
                "run code with rlimits only"
            )
        return None

    def soft_reason(self) -> str | None:
        """Why hard limits (a cgroup per call, a tmpfs per container) cannot be used here, or ``None``."""
        if self._hard is None:
            found = Cgroups.detect()
            if isinstance(found, Cgroups):
                problem = disks.probe()
                self._hard = found if problem is None else problem
            else:
                self._hard = found
        return self._hard if isinstance(self._hard, str) else None

    def remove_stale_groups(self) -> int:
        """Delete the empty call groups a killed server left behind (see ``Cgroups.remove_stale``)."""
        if self.soft_reason() is not None:
            return 0
        assert isinstance(self._hard, Cgroups)
        return self._hard.remove_stale()

    @property
    def hard(self) -> bool:
        return self.soft_reason() is None

    def describe(self) -> str:
        """How the limits are enforced, for ``wisegate sandbox check`` and the startup log."""
        if isinstance(self._hard, Cgroups) or self.soft_reason() is None:
            assert isinstance(self._hard, Cgroups)
            return f"hard limits: {self._hard.describe()}, a tmpfs per container"
        return f"soft limits (rlimits only): {self._hard}"

    @property
    def as_other_user(self) -> bool:
        return os.geteuid() == 0 and self.uid != 0

    def prepare(self, root: Path) -> None:
        """Create the container's disk and directories (owned by the sandbox's user)."""
        if self.hard:
            disks.mount(root, self.limits.disk_bytes, MAX_ENTRIES)
        root.mkdir(parents=True, exist_ok=True)
        for name in (*WRITABLE, "skills"):
            path = root / name
            path.mkdir(exist_ok=True)
            if self.as_other_user and name != "skills":
                os.chown(path, self.uid, self.uid)

    def argv(self, fds: dict[str, int], command: Sequence[str]) -> list[str]:
        """bwrap's arguments; ``fds``: open directories of the container by name (bound by descriptor,
        so the sandbox's user needs no access to the path of the data dir)."""
        args = [self.bwrap, "--die-with-parent", "--new-session"]
        if self.as_other_user:  # privileged bwrap: no user namespace, so that the uid below is real
            args += [
                "--unshare-ipc",
                "--unshare-pid",
                "--unshare-net",
                "--unshare-uts",
                "--unshare-cgroup-try",
            ]
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        else:
            args += ["--unshare-all"]
            if _disables_userns(self.bwrap):
                args += ["--unshare-user", "--disable-userns"]
        args += ["--ro-bind", "/usr", "/usr"]
        for name in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{name}"):
                args += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
            elif os.path.isdir(f"/{name}"):
                args += ["--ro-bind", f"/{name}", f"/{name}"]
        args += ["--perms", "0755", "--dir", "/etc"]
        for path in (*_SYSTEM_FILES, *self.ro_binds):
            if os.path.exists(path):
                args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev"]
        for parent in ("/home", "/mnt", "/mnt/user-data"):  # readable by the sandbox's user
            args += ["--perms", "0755", "--dir", parent]
        for name, target in MOUNTS.items():
            args += ["--bind-fd", str(fds[name]), target]
        args += ["--ro-bind-fd", str(fds["skills"]), SKILLS_DIR]
        args += ["--remount-ro", "/", "--chdir", MOUNTS["home"], "--clearenv"]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": MOUNTS["home"], "LANG": "C.UTF-8"}
        env["TMPDIR"] = "/tmp"
        if self.python_path:
            env["PYTHONPATH"] = ":".join(self.python_path)
        for key, value in env.items():
            args += ["--setenv", key, value]
        if self.as_other_user:
            uid = str(self.uid)
            drop = [
                "--reuid",
                uid,
                "--regid",
                uid,
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ]
            inner = shutil.which(self.bwrap) or ""
            if inner.startswith("/usr/") and _disables_userns(self.bwrap):
                # A user namespace of the sandbox's user, in which no further one can be made: the
                # code cannot gain the capabilities a user namespace grants (nested mounts and so on).
                nested = ["--unshare-user", "--disable-userns", "--dev-bind", "/", "/"]
                command = [inner, *nested, "--chdir", MOUNTS["home"], "--", *command]
            command = ["/usr/bin/setpriv", *drop, "--no-new-privs", "--", *command]
        return [*args, "--", *command]

    def release(self, root: Path) -> None:
        """Delete the container's disk and everything on it."""
        disks.unmount(root)
        shutil.rmtree(root, ignore_errors=True)

    async def run(
        self, root: Path, command: Sequence[str], used_bytes: int, stdin: bytes = b"", owner: str = ""
    ) -> RunResult:
        """Run ``command`` in the sandbox over ``root``; ``used_bytes``: the container's disk use now;
        ``stdin``: what the command reads on its standard input (an in-memory file, so that inputs
        past the kernel's 128 KiB bound on one argument reach it).

        Waits while ``max_running`` calls run, or while ``owner`` (a workspace) runs its share of them
        and another owner waits (see ``_Slots``); the wall-time limit counts from the start."""
        if self._running is None:
            self._running = _Slots(self.limits.max_running)
        async with self._running.held(owner):
            group = None
            if self.hard:
                assert isinstance(self._hard, Cgroups)
                call = CallLimits(self.limits.memory_bytes, self.limits.processes, self.limits.cpus)
                group = await anyio.to_thread.run_sync(self._hard.create, call)
            try:
                return await self._run(root, command, used_bytes, group, stdin)
            finally:
                if group is not None and not await anyio.to_thread.run_sync(group.remove):
                    log.warning("a sandbox call's cgroup could not be removed: %s", group.directories[0])

    async def _run(
        self, root: Path, command: Sequence[str], used_bytes: int, group: CallGroup | None, stdin: bytes
    ) -> RunResult:
        limits = self.limits
        # With a tmpfs the kernel's ENOSPC is the quota (the file-size rlimit would kill with SIGXFSZ).
        room = limits.disk_bytes if group is not None else max(limits.disk_bytes - used_bytes, 0)
        headroom = await anyio.to_thread.run_sync(_tasks_of, self.uid if self.as_other_user else os.getuid())
        rlimits = [
            (resource.RLIMIT_CPU, limits.cpu_seconds),
            (resource.RLIMIT_AS, limits.memory_bytes),
            (resource.RLIMIT_NPROC, limits.processes + headroom),
            (resource.RLIMIT_NOFILE, limits.open_files),
            (resource.RLIMIT_FSIZE, max(room, 1)),
            (resource.RLIMIT_CORE, 0),
        ]

        full_before = group is not None and await anyio.to_thread.run_sync(disks.full, root)
        started = time.monotonic()
        fds = {name: _open_dir(root / name) for name in (*WRITABLE, "skills")}
        keep = set(fds.values())

        def limit() -> None:
            # uvloop's spawn leaves the server's descriptors open across exec (the API's listening
            # socket, connections, pipes) whatever close_fds says: mark every one but the bound
            # directories close-on-exec here, in the child, before bwrap starts.
            for name in os.listdir("/proc/self/fd"):
                fd = int(name)
                if fd > 2 and fd not in keep:
                    with contextlib.suppress(OSError):
                        os.set_inheritable(fd, False)
            for kind, value in rlimits:
                resource.setrlimit(kind, (value, value))
            if group is not None:
                group.join()

        argv = self.argv(fds, command)
        argv[0] = shutil.which(self.bwrap) or self.bwrap
        given = _memory_file(stdin) if stdin else None
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL if given is None else given,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=limit,
                pass_fds=tuple(fds.values()),
                env={"PATH": "/usr/bin:/bin"},  # bwrap is PID 1 in there: its environ is readable inside
            )
        finally:
            for fd in fds.values():
                os.close(fd)
            if given is not None:
                os.close(given)
        assert process.stdout is not None and process.stderr is not None
        outcome = RunResult("", "", 0, 0.0)
        watchdog = asyncio.create_task(self._watch(root, process, outcome, hard=group is not None))
        try:
            async with asyncio.timeout(limits.wall_seconds):
                out, err = await asyncio.gather(_capped(process.stdout), _capped(process.stderr))
                code = await process.wait()
        except TimeoutError:
            outcome.timed_out = True
            out, err, code = (b"", 0), (b"", 0), -signal.SIGKILL
        finally:
            _kill(process)
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            with contextlib.suppress(ProcessLookupError):
                await process.wait()
        outcome.stdout = _shown(*out, "stdout")
        outcome.stderr = _shown(*err, "stderr")
        outcome.truncated = bool(out[1] or err[1])
        outcome.return_code = code if code >= 0 else 128 - code
        outcome.seconds = time.monotonic() - started
        if group is not None:
            outcome.disk_full = await anyio.to_thread.run_sync(disks.full, root)
            outcome.disk_exceeded = outcome.disk_full and not full_before  # this call filled it
        elif not outcome.disk_exceeded:
            usage = await anyio.to_thread.run_sync(disk_usage, root)
            outcome.disk_exceeded = usage[0] >= limits.disk_bytes or usage[1] > MAX_ENTRIES
        return outcome

    async def _watch(
        self, root: Path, process: asyncio.subprocess.Process, outcome: RunResult, *, hard: bool
    ) -> None:
        while process.returncode is None and not hard:  # with hard limits, the tmpfs is the quota
            await asyncio.sleep(_WATCH_SECONDS)
            size, entries = await anyio.to_thread.run_sync(disk_usage, root)
            if size > self.limits.disk_bytes or entries > MAX_ENTRIES:
                outcome.disk_exceeded = True
                _kill(process)
                return


class _Slots:
    """``limit`` calls at once; while another owner waits, one owner holds at most half of them
    (rounded up), so that one workspace's many calls cannot keep every other workspace waiting."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.share = -(-limit // 2)
        self.running: Counter[str] = Counter()
        self.waiting: Counter[str] = Counter()
        self.changed = asyncio.Condition()

    def _may_start(self, owner: str) -> bool:
        if self.running.total() >= self.limit:
            return False
        others_wait = any(count for name, count in self.waiting.items() if name != owner)
        return self.running[owner] < self.share or not others_wait

    @contextlib.asynccontextmanager
    async def held(self, owner: str) -> AsyncIterator[None]:
        async with self.changed:
            self.waiting[owner] += 1
            try:
                await self.changed.wait_for(lambda: self._may_start(owner))
            finally:
                self.waiting[owner] -= 1
                self.changed.notify_all()  # a waiter that left may let another owner's call start
            self.running[owner] += 1
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                async with self.changed:
                    self.running[owner] -= 1
                    self.changed.notify_all()


@functools.cache
def _disables_userns(bwrap: str) -> bool:
    """Whether this bubblewrap has ``--disable-userns`` (0.8 and later)."""
    try:
        shown = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--disable-userns" in shown.stdout + shown.stderr


def _memory_file(data: bytes) -> int:
    """A descriptor of an in-memory file holding ``data``, at its start."""
    fd = os.memfd_create("wisegate-input", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _open_dir(path: Path) -> int:
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)


def disk_usage(root: Path) -> tuple[int, int]:
    """Bytes and entries in the container's writable directories (symlinks are not followed)."""
    size = entries = 0
    for name in WRITABLE:
        for directory, dirs, files in os.walk(root / name):
            entries += len(dirs) + len(files)
            for item in files:
                with contextlib.suppress(OSError):
                    size += os.lstat(os.path.join(directory, item)).st_blocks * 512
    return size, entries


def _tasks_of(uid: int) -> int:
    """Tasks (processes and threads) the user runs now: RLIMIT_NPROC counts them all."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            total += int(fields.get("Threads", "1").strip() or 1)
    return total


async def _capped(stream: asyncio.StreamReader) -> tuple[bytes, int]:
    """The stream's first bytes (up to the cap) and how many bytes followed them; reads to the end."""
    kept = bytearray()
    dropped = 0
    while chunk := await stream.read(65536):
        room = max(_OUTPUT_CAP - len(kept), 0)
        dropped += max(len(chunk) - room, 0)
        kept += chunk[:room]
    return bytes(kept), dropped


def _shown(data: bytes, dropped: int, name: str) -> str:
    """The output as text, with a last line saying how much was cut off past the cap."""
    text = data.decode("utf-8", "replace")
    if dropped:
        newline = "" if text.endswith("\n") or not text else "\n"
        text += f"{newline}[{name} truncated: {dropped} more bytes dropped, {_OUTPUT_CAP} bytes are kept]\n"
    return text


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
