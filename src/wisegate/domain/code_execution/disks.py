"""A container's disk: a size-limited tmpfs mounted on the host at the container's directory.

The kernel enforces the quota (``size=``) and the number of files and directories (``nr_inodes=``): a
write past either fails with ``ENOSPC`` inside the sandbox, whatever makes it (``dd``, ``fallocate``,
many small files). The mount outlives the call and the server process (the container's files are kept
between calls and across a restart of the server) but not a reboot of the host; its pages live in
memory (and swap), which is why ``WISEGATE_CONTAINER_TOTAL_BYTES`` bounds the sum of all quotas.
Mounting needs ``CAP_SYS_ADMIN`` (a server running as root).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import tempfile
from pathlib import Path

_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def mount(root: Path, size: int, entries: int) -> None:
    """Mount a tmpfs of ``size`` bytes and ``entries`` inodes at ``root`` unless one is there already."""
    root.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(root):
        return
    options = f"size={size},nr_inodes={entries},mode=0755".encode()
    flags = _MS_NOSUID | _MS_NODEV
    if _libc.mount(b"tmpfs", str(root).encode(), b"tmpfs", flags, options) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"cannot mount the container's tmpfs at {root}: {os.strerror(error)}")


def unmount(root: Path) -> None:
    """Detach the container's tmpfs (its memory is freed once nothing uses it)."""
    if os.path.ismount(root) and _libc.umount2(str(root).encode(), _MNT_DETACH) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"cannot unmount {root}: {os.strerror(error)}")


def probe() -> str | None:
    """``None`` if this process may mount a tmpfs, else why not."""
    with tempfile.TemporaryDirectory(prefix="wisegate-disk-probe-") as directory:
        try:
            mount(Path(directory), 1024 * 1024, 16)
        except OSError as exc:
            return f"tmpfs cannot be mounted ({os.strerror(exc.errno or 0)}; the server needs CAP_SYS_ADMIN)"
        unmount(Path(directory))
    return None


def full(root: Path) -> bool:
    """Whether the tmpfs at ``root`` is (nearly) out of space or of inodes."""
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize < max(st.f_blocks * st.f_frsize // 100, 64 * 1024) or st.f_favail == 0
