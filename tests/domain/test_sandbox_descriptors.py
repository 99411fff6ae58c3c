"""The sandbox inherits none of the server's descriptors: its listening socket, connections and pipes
stay out of reach even under uvloop (the server's event loop), whose spawn ignores close_fds."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import uvloop

from wisegate.services import sandbox_of
from wisegate.settings import Settings


def test_the_servers_descriptors_are_closed_in_the_sandbox(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    read, write = os.pipe()
    sandbox = sandbox_of(Settings(data_dir=tmp_path / "data"))
    root = tmp_path / "container"
    try:
        sandbox.prepare(root)  # with a tmpfs quota, mounts the container's disk: released below
        # Each open descriptor's target, one per line (find holds a few of its own: directories).
        command = ["/usr/bin/find", "/proc/self/fd", "-mindepth", "1", "-printf", "%f %l\n"]
        result = uvloop.run(sandbox.run(root, command, 0))
    finally:
        listener.close()
        os.close(read)
        os.close(write)
        sandbox.release(root)
    assert not os.path.ismount(root)  # no container disk is left mounted after the test
    assert result.return_code == 0, result.stderr
    open_fds = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    leaked = {
        fd: target
        for fd, target in open_fds.items()
        if int(fd) > 2 and ("socket" in target or "pipe" in target)
    }
    assert not leaked, open_fds
