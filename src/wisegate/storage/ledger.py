"""A local append-only journal of settlements not yet committed to the database.

A settlement is one line written with a single ``write()`` to a segment file opened ``O_APPEND``:
once that call returns, the line is in the kernel's page cache and survives ``kill -9`` of the
process (the same promise SQLite's WAL with ``synchronous=NORMAL`` makes for a commit). The billing
writer then commits journaled settlements to the database in groups, off the request path, and
deletes a segment once every line in it has committed.

Each process journals into a directory of its own holding an ``flock``-ed lock file. A directory
whose lock can be taken belongs to a process that died: its lines are replayed (settlements whose
usage record is already in the database are skipped) and the directory is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from wisegate.records.usage import UsageRecord

log = logging.getLogger("wisegate.ledger")

_RECORD_FIELDS = tuple(f.name for f in fields(UsageRecord))


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One settlement: the usage record, the reservation it releases (as a dict) and the month."""

    record: UsageRecord
    reservation: dict[str, Any] | None
    period: str

    def encode(self) -> bytes:
        record = {name: getattr(self.record, name) for name in _RECORD_FIELDS}
        record["created_at"] = self.record.created_at.isoformat()
        line = {"r": record, "s": self.reservation, "p": self.period}
        return json.dumps(line, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> JournalEntry:
        data = json.loads(line)
        record = dict(data["r"])
        record["created_at"] = datetime.fromisoformat(record["created_at"])
        return cls(UsageRecord(**record), data["s"], data["p"])


class LedgerJournal:
    """This process's journal directory: append lines, rotate segments, replay dead processes' ones."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dir: Path | None = None
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segment: Path | None = None
        self._serial = 0

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        # Locked under a hidden name first: another process never sees it unlocked (as an orphan).
        hidden = self.root / f".{name}"
        hidden.mkdir()
        lock_fd = os.open(hidden / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        directory = self.root / name
        hidden.rename(directory)
        self._dir, self._lock_fd = directory, lock_fd
        self._open_segment()

    def _open_segment(self) -> None:
        """Open the next segment; only once that worked does it replace the current one."""
        assert self._dir is not None
        segment = self._dir / f"{self._serial + 1:012d}.jsonl"
        fd = os.open(segment, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._serial += 1
        self._segment, self._fd = segment, fd

    def append(self, line: bytes) -> None:
        """Write one line; when this returns the line survives the process being killed."""
        if self._fd is None:
            self.open()
        assert self._fd is not None
        written = os.write(self._fd, line)
        if written != len(line):  # a regular file writes all or raises (disk full)
            with contextlib.suppress(OSError):
                os.write(self._fd, b"\n")  # end the torn line, so that the next one reads on replay
            raise OSError(f"short write to the ledger journal ({written} of {len(line)} bytes)")

    def reject(self, line: bytes) -> None:
        """Keep a settlement the database refuses for good in ``rejected.jsonl``, for an operator."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "rejected.jsonl").open("ab") as file:
            file.write(line)

    def rotate(self) -> Path:
        """Start a new segment for later lines; returns the finished one (delete it once committed).
        If the new one cannot be opened, the current one stays open and in use."""
        if self._fd is None:
            self.open()
        assert self._fd is not None and self._segment is not None
        finished, old_fd = self._segment, self._fd
        self._open_segment()
        os.close(old_fd)
        return finished

    def close(self, *, clean: bool) -> None:
        """Release the directory; ``clean``: every line committed, so remove it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._dir is not None and clean:
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._dir = None

    def orphans(self) -> Iterator[tuple[Path, list[JournalEntry]]]:
        """Directories of dead processes, locked while the caller replays them, with their entries.

        The caller deletes a directory (``remove``) once its entries are committed; one that is not
        removed is unlocked again when the iteration moves on.
        """
        if not self.root.is_dir():
            return
        mine = self._dir
        names = (p for p in self.root.iterdir() if not p.name.startswith("."))
        for directory in sorted(p for p in names if p.is_dir() and p != mine):
            try:
                lock_fd = os.open(directory / "lock", os.O_RDWR)
            except FileNotFoundError:  # removed by another process meanwhile
                continue
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process is alive
                os.close(lock_fd)
                continue
            try:
                if directory.exists():
                    yield directory, list(_read_entries(directory))
            finally:
                os.close(lock_fd)

    @staticmethod
    def remove(directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)


def _read_entries(directory: Path) -> Iterator[JournalEntry]:
    for segment in sorted(directory.glob("*.jsonl")):
        for number, line in enumerate(segment.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield JournalEntry.decode(line)
            except (ValueError, KeyError, TypeError):
                # Only a line cut short by the process dying mid-write can be unreadable.
                log.error(
                    "unreadable ledger journal line skipped", extra={"segment": str(segment), "line": number}
                )
