"""Credits through the console on SQLite and PostgreSQL: each amount within $1,000,000 either way, the
balance within $0…$5,000,000 for top-ups and corrections, refused atomically (concurrent top-ups never
carry it past the bound), and top-ups go on once $5,000,000 have been bought over time."""

from __future__ import annotations

import contextlib
import html
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import httpx
import pytest

from tests.conftest import LiveServer, postgres_database, scripted_settings, serve
from tests.console.support import csrf_of, flash, login, post
from wisegate.backends.scripted import ScriptedBackend
from wisegate.protocol.bounds import MAX_BALANCE_PICO


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with postgres_database() if request.param == "postgres" else contextlib.nullcontext() as url:
        settings = scripted_settings(
            tmp_path_factory.mktemp("money"), **({"database_url": url} if url else {})
        )
        yield from serve(settings, backends={"scripted": ScriptedBackend()})


def _credit(console: httpx.Client, usd: str, **more: str) -> str:
    return html.unescape(
        flash(console, post(console, "/console/limits", "/console/limits/credits", {"usd": usd, **more}))
    )


def _account(server: LiveServer) -> tuple[int | None, int]:
    org = server.services.organization_id
    assert org is not None
    account = server.run(server.services.limits.billing.account(org))
    return account.credit_balance_pico, account.credits_purchased_pico


def test_top_ups_and_corrections_stay_in_range(server: LiveServer) -> None:
    with closing(login(server)) as console:
        assert "out of range: an amount may be at most $1,000,000" in _credit(console, "-1000000.01")
        assert "below $0; it is $0.000000, and this correction is $-5.000000" in _credit(console, "-5")
        assert _account(server) == (None, 0)  # nothing changed: not even prepaid
        token = csrf_of(console.get("/console/limits").text)

        def top_up(_: int) -> int:
            data = {"csrf_token": token, "back": "/console/limits", "usd": "1000000"}
            return console.post("/console/limits/credits", data=data).status_code

        with ThreadPoolExecutor(8) as pool:  # 8 at once: exactly 5 fit, whatever the interleaving
            assert list(pool.map(top_up, range(8))) == [303] * 8
        assert _account(server) == (MAX_BALANCE_PICO, MAX_BALANCE_PICO)
        refused = _credit(console, "0.01")
        assert "may hold at most $5,000,000; it is $5000000.000000" in refused, refused
        assert "Credits added: balance $4000000.000000" in _credit(console, "-1000000")
        # $5,000,000 bought over time: a top-up is still taken; the purchased total stops at the bound.
        assert "Credits added: balance $5000000.000000" in _credit(console, "1000000")
        assert _account(server) == (MAX_BALANCE_PICO, MAX_BALANCE_PICO)
        for _ in range(5):
            _credit(console, "-1000000")
        assert "below $0; it is $0.000000" in _credit(console, "-0.01")
        assert _account(server) == (0, MAX_BALANCE_PICO)


def test_amounts_are_plain_ascii_decimals_and_notes_are_bounded(server: LiveServer) -> None:
    """``1_000``, ``1e3`` and other scripts' digits are no amount (Python's ``Decimal`` takes them); a
    note is refused past 256 characters or with a control character, as the CLI refuses it."""
    with closing(login(server)) as console:
        before = _account(server)
        for amount in ("1_000", "1e3", "٢٥", "２５", "Infinity", "NaN"):
            said = _credit(console, amount)
            assert "is not an amount in USD" in said, (amount, said)
        for note, why in (("n" * 257, "at most 256 characters"), ("a\x1b[2Jb", "control characters")):
            said = _credit(console, "1", note=note)
            assert said.startswith("note: ") and why in said, said
        assert _account(server) == before
        said = _credit(console, "1", note="n" * 256)
        assert said.startswith("Credits added"), said
        assert 'maxlength="256"' in console.get("/console/limits").text
