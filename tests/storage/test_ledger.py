"""The ledger journal: settlements return once journaled, commit in the background, and a dead
process's journal is replayed exactly once (skipping what already committed)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from tests.conftest import postgres_database
from wisegate.records.billing import Reservation
from wisegate.records.usage import UsageRecord
from wisegate.storage.billing import BillingRepo
from wisegate.storage.db import Database, migrate
from wisegate.storage.ledger import JournalEntry, LedgerJournal
from wisegate.storage.tables import SpendPeriodRow, SpendReservationRow, UsageRecordRow

PERIOD = "2026-11"


def _record(request_id: str, cost: int) -> UsageRecord:
    return UsageRecord(
        request_id, "org_1", "wrkspc_1", "apikey_1", "claude-sonnet-4-5",
        10, 5, 0, 0, "standard", "end_turn", None, False, 3, datetime.now(UTC), cost,
    )  # fmt: skip


async def _counts(db: Database) -> tuple[int, int, int, int]:
    """(usage rows, organization spent, organization reserved, reservation rows)."""
    async with db.read() as session:
        rows = (await session.execute(select(func.count()).select_from(UsageRecordRow))).scalar_one()
        period = await session.get(SpendPeriodRow, ("org_1", PERIOD))
        held = (await session.execute(select(func.count()).select_from(SpendReservationRow))).scalar_one()
    spent, reserved = (period.spent_pico, period.reserved_pico) if period else (0, 0)
    return int(rows), spent, reserved, int(held)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    return Database(url)


def test_settle_returns_once_journaled_and_commits_in_the_background(tmp_path: Path, db: Database) -> None:
    async def run() -> None:
        journal = LedgerJournal(tmp_path / "journal")
        billing = BillingRepo(db, journal)
        await billing.reserve(Reservation("req_1", "org_1", "wrkspc_1", PERIOD, 500, 0), 10_000, None)
        await billing.settle(
            _record("req_1", 120), Reservation("req_1", "org_1", "wrkspc_1", PERIOD, 500, 0), PERIOD
        )
        # Returned before the transaction: the line is on disk, the row not yet in the database.
        lines = [
            line for f in (tmp_path / "journal").glob("*/*.jsonl") for line in f.read_bytes().splitlines()
        ]
        assert len(lines) == 1 and JournalEntry.decode(lines[0]).record.request_id == "req_1"
        assert (await _counts(db))[0] == 0
        await billing.drain()
        assert await _counts(db) == (1, 120, 0, 0)
        # The committed segment is gone; what is left is the lock and an empty new segment.
        assert all(f.stat().st_size == 0 for f in (tmp_path / "journal").glob("*/*.jsonl"))
        billing.close()
        assert list((tmp_path / "journal").iterdir()) == []  # clean close removes the directory
        await db.close()

    asyncio.run(run())


def _dead_journal(root: Path, entries: list[JournalEntry], tail: bytes = b"") -> None:
    """What a killed process leaves: an unlocked directory with journal lines."""
    journal = LedgerJournal(root)
    for entry in entries:
        journal.append(entry.encode())
    if tail:
        journal.append(tail)
    journal.close(clean=False)


def test_a_dead_processs_journal_is_replayed_once(tmp_path: Path, db: Database) -> None:
    async def run() -> None:
        root = tmp_path / "journal"
        first = BillingRepo(db)  # commits req_1 itself, as if the dead process had flushed it
        held = Reservation("req_2", "org_1", "wrkspc_1", PERIOD, 900, 0)
        await first.reserve(held, 10_000, None)
        await first.settle(_record("req_1", 100), None, PERIOD)
        entries = [
            JournalEntry(_record("req_1", 100), None, PERIOD),  # committed before the crash
            JournalEntry(_record("req_2", 250), asdict(held), PERIOD),
            JournalEntry(_record("req_3", 40), None, PERIOD),
        ]
        _dead_journal(root, entries, tail=b'{"r":{"request_id":"req_4"')  # cut short mid-write
        assert await _counts(db) == (1, 100, 900, 1)

        billing = BillingRepo(db, LedgerJournal(root))
        assert await billing.recover() == 2
        # req_1 not twice; req_2's reservation released and its cost debited; the torn line skipped.
        assert await _counts(db) == (3, 390, 0, 0)
        assert list(root.iterdir()) == []
        assert await billing.recover() == 0
        await db.close()

    asyncio.run(run())


def test_a_live_processs_journal_is_left_alone(tmp_path: Path, db: Database) -> None:
    async def run() -> None:
        root = tmp_path / "journal"
        live = LedgerJournal(root)
        live.append(JournalEntry(_record("req_1", 7), None, PERIOD).encode())  # open and locked
        other = BillingRepo(db, LedgerJournal(root))
        assert await other.recover() == 0
        assert (await _counts(db))[0] == 0
        live.close(clean=False)  # its process ends without committing: now it is an orphan
        assert await other.recover() == 1
        assert (await _counts(db))[:2] == (1, 7)
        await db.close()

    asyncio.run(run())


def test_a_settlement_the_database_refuses_is_kept_and_retried(
    tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run() -> None:
        billing = BillingRepo(db, LedgerJournal(tmp_path / "journal"))
        real = billing._settle_group
        failures = [2]

        async def flaky(session, group):  # type: ignore[no-untyped-def]
            if failures[0]:
                failures[0] -= 1
                raise OperationalError("insert", {}, Exception("database is locked"))
            await real(session, group)

        monkeypatch.setattr(billing, "_settle_group", flaky)
        await billing.settle(_record("req_1", 30), None, PERIOD)
        await asyncio.wait_for(billing.drain(), 10)
        assert (await _counts(db))[:2] == (1, 30)
        # While it waited for the retry the settlement stayed on disk: a crash then would replay it.
        assert all(f.stat().st_size == 0 for f in (tmp_path / "journal").glob("*/*.jsonl"))
        billing.close()
        assert list((tmp_path / "journal").iterdir()) == []
        await db.close()

    asyncio.run(run())


def test_journal_lines_are_single_appends(tmp_path: Path) -> None:
    journal = LedgerJournal(tmp_path / "journal")
    entry = JournalEntry(_record("req_1", 5), {"request_id": "req_1", "amount_pico": 9}, PERIOD)
    journal.append(entry.encode())
    finished = journal.rotate()
    assert JournalEntry.decode(finished.read_bytes()) == entry
    assert finished.read_bytes().count(b"\n") == 1
    assert os.path.getsize(finished) == len(entry.encode())
    journal.close(clean=True)


def test_stopping_while_the_database_is_down_keeps_the_journal(
    tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run() -> None:
        root = tmp_path / "journal"
        down = BillingRepo(db, LedgerJournal(root))

        async def refuse(session, group):  # type: ignore[no-untyped-def]
            raise OperationalError("insert", {}, Exception("connection refused"))

        monkeypatch.setattr(down, "_settle_group", refuse)
        await down.settle(_record("req_1", 11), None, PERIOD)
        await asyncio.wait_for(down.stop(timeout=0.3), 5)  # gives up instead of hanging shutdown
        assert (await _counts(db))[0] == 0
        # The next process finds the journal (unlocked now) and commits it.
        assert await BillingRepo(db, LedgerJournal(root)).recover() == 1
        assert (await _counts(db))[:2] == (1, 11)
        await db.close()

    asyncio.run(run())


def test_a_batch_re_run_gives_the_interrupted_attempts_cost_back(tmp_path: Path, db: Database) -> None:
    """A re-run drops the usage record of the attempt a crash interrupted: its cost leaves the monthly
    counters and returns to the credit balance with it, so the request is billed once."""

    async def run() -> None:
        billing = BillingRepo(db, LedgerJournal(tmp_path / "journal"))
        await billing.add_credits("org_1", 1_000, "top-up")
        first = _record("batch_1:0", 300)
        await billing.settle(first, None, first.created_at.strftime("%Y-%m"))
        await billing.drain()
        month = first.created_at.strftime("%Y-%m")
        assert (await billing.period_spend("org_1", month))[0] == 300
        assert (await billing.account("org_1")).credit_balance_pico == 700

        await billing.unsettle("batch_1:0")  # the re-run starts
        assert (await billing.period_spend("org_1", month))[0] == 0
        assert (await billing.period_spend("wrkspc_1", month))[0] == 0
        account = await billing.account("org_1")
        assert account.credit_balance_pico == 1_000 and account.spent_pico == 0
        second = _record("batch_1:0", 280)
        await billing.settle(second, None, month)
        await billing.drain()
        assert (await billing.period_spend("org_1", month))[0] == 280
        assert (await billing.account("org_1")).credit_balance_pico == 720
        await db.close()

    asyncio.run(run())


def test_a_replayed_lease_settlement_shrinks_the_lease(tmp_path: Path, db: Database) -> None:
    """A settlement against a spend lease keeps ``lease`` through the journal: its replay takes its
    part off the lease row (the lease lives on), not the whole row."""

    async def run() -> None:
        root = tmp_path / "journal"
        billing = BillingRepo(db, LedgerJournal(root))
        await billing.reserve(Reservation("lease:p1:1", "org_1", "wrkspc_1", PERIOD, 1_000, 0), None, None)
        part = Reservation("lease:p1:1", "org_1", "wrkspc_1", PERIOD, 150, 0, lease=True)
        _dead_journal(root, [JournalEntry(_record("req_9", 100), asdict(part), PERIOD)])
        assert await billing.recover() == 1
        assert await _counts(db) == (1, 100, 850, 1)  # spent 100, the lease still holds 850
        async with db.read() as session:
            lease = await session.get(SpendReservationRow, "lease:p1:1")
        assert lease is not None and lease.amount_pico == 850
        await db.close()

    asyncio.run(run())


def test_drain_waits_for_earlier_settlements_only(tmp_path: Path, db: Database) -> None:
    """A reader's drain returns once what was handed in before it committed, even while a steady
    stream of later settlements keeps the writer busy."""

    async def run() -> None:
        billing = BillingRepo(db, LedgerJournal(tmp_path / "journal"))
        await billing.settle(_record("req_first", 1), None, PERIOD)
        stop = asyncio.Event()

        async def stream() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                await billing.settle(_record(f"req_{n}", 1), None, PERIOD)
                await asyncio.sleep(0.001)

        busy = asyncio.create_task(stream())
        await asyncio.sleep(0.05)
        await asyncio.wait_for(billing.drain(), 5)
        async with db.read() as session:
            first = (
                await session.execute(select(UsageRecordRow).where(UsageRecordRow.request_id == "req_first"))
            ).scalar_one_or_none()
        assert first is not None
        assert not busy.done()  # the stream was still going when drain returned
        stop.set()
        await busy
        await billing.stop()
        await db.close()

    asyncio.run(run())


def test_drain_waits_for_an_earlier_settlement_kept_for_a_retry(
    tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Later settlements committing first do not let a reader's drain return early."""

    async def run() -> None:
        billing = BillingRepo(db, LedgerJournal(tmp_path / "journal"))
        real = billing._settle_group
        failures = [3]

        async def flaky(session, group):  # type: ignore[no-untyped-def]
            if any(q.record.request_id == "req_early" for q in group) and failures[0]:
                failures[0] -= 1
                raise OperationalError("insert", {}, Exception("database is locked"))
            await real(session, group)

        monkeypatch.setattr(billing, "_settle_group", flaky)
        await billing.settle(_record("req_early", 1), None, PERIOD)
        await asyncio.sleep(0.1)  # its first round failed: kept for a retry
        draining = asyncio.create_task(billing.drain())
        await asyncio.sleep(0)
        for n in range(3):
            await billing.settle(_record(f"req_late_{n}", 1), None, PERIOD)
        await asyncio.wait_for(draining, 10)
        async with db.read() as session:
            early = await session.execute(
                select(UsageRecordRow).where(UsageRecordRow.request_id == "req_early")
            )
            assert early.scalar_one_or_none() is not None
        await billing.stop()
        await db.close()

    asyncio.run(run())


def test_a_long_outage_does_not_stop_the_writer(tmp_path: Path, db: Database) -> None:
    """The back-off is capped: after any number of failed rounds the next one still runs."""

    async def run() -> None:
        billing = BillingRepo(db, LedgerJournal(tmp_path / "journal"))
        billing._retries = 5000  # as after hours of a database that was down
        await billing.settle(_record("req_1", 2), None, PERIOD)
        await asyncio.wait_for(billing.drain(), 15)
        assert (await _counts(db))[:2] == (1, 2)
        await billing.stop()
        await db.close()

    asyncio.run(run())


def test_a_segment_that_cannot_be_opened_leaves_the_journal_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = LedgerJournal(tmp_path / "journal")
    first = JournalEntry(_record("req_1", 1), None, PERIOD).encode()
    journal.append(first)
    real_open = os.open

    def no_more_files(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).endswith(".jsonl"):
            raise OSError(24, "Too many open files")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_more_files)
    with pytest.raises(OSError, match="Too many open files"):
        journal.rotate()
    monkeypatch.setattr(os, "open", real_open)
    second = JournalEntry(_record("req_2", 1), None, PERIOD).encode()
    journal.append(second)  # still into the current segment, through a descriptor it still owns
    finished = journal.rotate()
    assert finished.read_bytes() == first + second
    journal.close(clean=True)


@pytest.mark.postgres
def test_a_settlement_the_database_refuses_for_good_is_set_aside(tmp_path: Path) -> None:
    """A value PostgreSQL refuses (longer than its column) is written to rejected.jsonl once, and the
    writer and readers carry on."""
    with postgres_database() as url:
        migrate(url)

        async def run() -> None:
            db = Database(url)
            billing = BillingRepo(db, LedgerJournal(tmp_path / "journal"))
            bad = replace(_record("req_bad", 1), stop_reason="x" * 500)
            await billing.settle(bad, None, PERIOD)
            await billing.settle(_record("req_good", 1), None, PERIOD)
            await asyncio.wait_for(billing.drain(), 15)
            assert (await _counts(db))[0] == 1
            rejected = (tmp_path / "journal" / "rejected.jsonl").read_bytes().splitlines()
            assert [JournalEntry.decode(line).record.request_id for line in rejected] == ["req_bad"]
            await billing.stop()
            await db.close()

        asyncio.run(run())
