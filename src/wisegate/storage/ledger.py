"""The ledger's write-behind queue and its local append-only journal of settlements not yet committed.

:class:`Ledger` takes settlements (``settle``) and commits them to the database in groups, through
the SQL of :class:`~wisegate.storage.billing.BillingRepo`: a settlement that is in the journal is
durable, so its caller does not wait for the transaction.

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

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from wisegate.records.billing import Reservation
from wisegate.records.usage import UsageRecord

log = logging.getLogger("wisegate.ledger")

_RECORD_FIELDS = tuple(f.name for f in fields(UsageRecord))
_RESERVATION_FIELDS = tuple(f.name for f in fields(Reservation))
_LINGER_SECONDS = 0.25  # how long journaled settlements wait to be committed together (the journal
# keeps them meanwhile; a reader that needs them committed hurries the commit)


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


@dataclass(slots=True)
class Queued:
    """A settlement waiting for its transaction; ``seq`` numbers it in this process (0: replayed)."""

    record: UsageRecord
    reservation: Reservation | None
    period: str
    done: asyncio.Future[None] | None  # its caller waits on it; None when journaled (nobody waits)
    seq: int


class Ledger:
    """Settlements handed in, committed in groups by ``commit_group`` (one transaction for a group);
    ``recorded`` tells which request ids have a usage record already (replay skips them)."""

    def __init__(
        self,
        commit_group: Callable[[Sequence[Queued]], Awaitable[None]],
        recorded: Callable[[list[str]], Awaitable[set[str]]],
        journal: LedgerJournal | None = None,
    ) -> None:
        self._commit_group = commit_group
        self._recorded = recorded
        self._journal = journal
        self._retries = 0  # consecutive flushes that could not commit (the database is down)
        self._pending: list[Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # a reader is waiting: commit without lingering
        self._progress = asyncio.Event()  # set after every flush round
        self._handed = 0  # settlements handed in so far: the last one's sequence number
        self._unfinished: set[int] = set()  # sequence numbers not yet committed (or refused for good)

    @property
    def uncommitted(self) -> int:
        """Settlements handed in and not yet committed (the journal's lag)."""
        return len(self._unfinished)

    async def settle(self, record: UsageRecord, reservation: Reservation | None, period: str) -> None:
        """Release the reservation (if still held), debit ``record.cost_picousd`` from the monthly
        counters and the credit balance, and insert the usage record, in one transaction.

        Journaled: returns once the settlement is in the journal; the transaction follows in the
        background (it may hold other settlements too). Otherwise — or when the journal cannot be
        written (disk full) — returns once it committed."""
        self._handed += 1
        seq = self._handed
        self._unfinished.add(seq)
        if self._journal is not None:
            try:
                self._journal.append(_line(record, reservation, period))
            except OSError:
                log.exception("the ledger journal cannot be written: this settlement commits now")
            else:
                self._pending.append(Queued(record, reservation, period, None, seq))
                self._kick()
                return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(Queued(record, reservation, period, done, seq))
        self._hurry.set()  # its caller waits
        self._kick()
        await asyncio.shield(done)

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def drain(self) -> None:
        """Wait until the settlements handed in so far are committed (before reads, on shutdown);
        later ones do not hold it up."""
        target = self._handed
        while any(seq <= target for seq in self._unfinished):
            self._hurry.set()
            self._kick()
            self._progress.clear()
            await self._progress.wait()

    async def stop(self, timeout: float = 10.0) -> None:
        """Commit everything, giving up after ``timeout`` seconds (the database is down): what is
        left stays in the journal for the next start to replay. Then close the journal."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while self._unfinished:
                await asyncio.wait_for(self.drain(), max(0.01, deadline - loop.time()))
        except TimeoutError:
            log.error(
                "settlements not committed at shutdown stay in the journal",
                extra={"left": len(self._unfinished)},
            )
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self.close()

    def close(self) -> None:
        """Close the journal; its directory goes only if everything in it committed."""
        if self._journal is not None:
            self._journal.close(clean=not self._unfinished)

    async def _flush(self) -> None:
        while self._pending:
            if self._retries:  # the database refused the last round: back off, keep the journal
                await asyncio.sleep(min(5.0, 0.05 * 2 ** min(self._retries, 7)))
            elif not self._hurry.is_set():
                # Nobody waits for a journaled settlement: linger so that the settlements of the next
                # few milliseconds share one transaction (the commits' CPU competes with requests).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), _LINGER_SECONDS)
            self._hurry.clear()
            try:
                await self._round()
            except Exception:  # the journal itself failed (disk full): keep it all, retry later
                log.exception("could not commit journaled settlements")
                self._retries += 1
            finally:
                self._progress.set()

    async def _round(self) -> None:
        """Commit everything pending, 500 settlements a transaction; delete the finished segment."""
        finished = self._journal.rotate() if self._journal is not None else None
        batch, self._pending = self._pending, []
        kept: list[Queued] = []
        try:
            for start in range(0, len(batch), 500):
                kept += await self._commit(batch[start : start + 500])
        except BaseException:
            # Cancelled mid-round: what did commit is done; the rest is still in the finished segment.
            self._pending = [item for item in batch if item.seq in self._unfinished] + self._pending
            raise
        self._retries = self._retries + 1 if kept else 0
        if kept:
            # Not committed, for a reason other than the settlement itself: retried after the back-off,
            # from the new segment (so the finished one can go). Back in the queue first: if writing
            # them fails, the finished segment stays and still holds them.
            self._pending = kept + self._pending
            assert self._journal is not None
            for item in kept:
                self._journal.append(_line(item.record, item.reservation, item.period))
        if finished is not None:
            finished.unlink(missing_ok=True)

    async def _commit(self, group: list[Queued]) -> list[Queued]:
        """Commit ``group`` in one transaction, or else each settlement alone; returns the journaled
        settlements to retry. A waiting caller gets its settlement's exception."""
        try:
            await self._commit_group(group)
        except Exception as exc:
            if len(group) == 1:
                return self._failed(group[0], exc)
            kept: list[Queued] = []
            for item in group:  # one failing settlement must not take the others with it
                kept += await self._commit([item])
            return kept
        for item in group:
            self._unfinished.discard(item.seq)
            if item.done is not None and not item.done.done():
                item.done.set_result(None)
        return []

    def _failed(self, item: Queued, exc: Exception) -> list[Queued]:
        record, done, seq = item.record, item.done, item.seq
        if done is not None:
            self._unfinished.discard(seq)
            if not done.done():
                done.set_exception(exc)
            return []
        verdict = _refusal(exc)
        if verdict == "duplicate":
            # Its usage record exists already (a request id settles once): nothing to retry.
            self._unfinished.discard(seq)
            log.error(
                "settlement refused by the database, dropped", extra={"usage_request_id": record.request_id}
            )
            return []
        if verdict == "values":
            # The database refuses its values (a string too long for its column): never retried, kept
            # for an operator in rejected.jsonl.
            self._unfinished.discard(seq)
            assert self._journal is not None
            self._journal.reject(_line(record, item.reservation, item.period))
            log.error(
                "settlement refused by the database, written to the journal's rejected.jsonl",
                extra={"usage_request_id": record.request_id},
                exc_info=exc,
            )
            return []
        log.warning("settlement not committed, kept in the journal for a retry", exc_info=exc)
        return [item]

    async def recover(self) -> int:
        """Replay the journals of processes that died before committing them; how many settled."""
        if self._journal is None:
            return 0
        replayed = 0
        for directory, entries in self._journal.orphans():
            todo = await self._unsettled(entries)
            kept: list[Queued] = []
            for start in range(0, len(todo), 500):
                kept += await self._commit(todo[start : start + 500])
            replayed += len(todo) - len(kept)
            if kept:
                log.error(
                    "a dead process's ledger journal could not be replayed yet", extra={"dir": str(directory)}
                )
                continue
            self._journal.remove(directory)
        if replayed:
            log.warning("replayed %d journaled settlements of a process that died", replayed)
        return replayed

    async def _unsettled(self, entries: list[JournalEntry]) -> list[Queued]:
        """The entries whose usage record is not in the database yet, as settlements."""
        ids = [e.record.request_id for e in entries]
        present = await self._recorded(ids)
        todo: list[Queued] = []
        for entry in entries:
            if entry.record.request_id in present:
                continue
            present.add(entry.record.request_id)
            held = Reservation(**entry.reservation) if entry.reservation is not None else None
            todo.append(Queued(entry.record, held, entry.period, None, 0))
        return todo


def _line(record: UsageRecord, reservation: Reservation | None, period: str) -> bytes:
    """A settlement as a journal line (``dataclasses.asdict`` deep-copies: 10× slower)."""
    plain = (
        None if reservation is None else {name: getattr(reservation, name) for name in _RESERVATION_FIELDS}
    )
    return JournalEntry(record, plain, period).encode()


def _refusal(exc: Exception) -> str | None:
    """Why the database refused a settlement for good: ``"duplicate"`` (its request id is recorded
    already), ``"values"`` (a value it cannot store), or None (a failure worth retrying)."""
    if isinstance(exc, IntegrityError):
        return "duplicate"
    if isinstance(exc, DataError):
        return "values"
    state = (
        str(getattr(getattr(exc, "orig", None), "sqlstate", "") or "") if isinstance(exc, DBAPIError) else ""
    )
    if state.startswith("23"):  # PostgreSQL (asyncpg): integrity constraint violation
        return "duplicate"
    if state.startswith("22"):  # data exception: too long, out of range, invalid text
        return "values"
    return None


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
