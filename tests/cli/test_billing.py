"""``wisegate credits`` and ``wisegate limits`` change what a running server enforces."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from wisegate.cli import main


def test_credits_and_limits_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WISEGATE_DATA_DIR", str(tmp_path))
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "tier\ttier-1" in run("credits", "show")
    assert run("credits", "add", "--usd", "40.5").startswith("balance $40.500000\tpurchased $40.500000")
    shown = run("credits", "show")
    assert "tier\ttier-2\n" in shown and "credit balance\t$40.500000" in shown
    run("limits", "tier", "tier-4")
    run("limits", "spend", "--usd", "12.25")
    shown = run("credits", "show")
    assert "tier\ttier-4 (pinned)" in shown and "spend limit\t$12.250000" in shown
    workspace = run("keys", "create", "--name", "w").split("\t")[1]
    assert '"rpm": 5' in run(
        "limits", "workspace-rate", "--workspace", workspace, "--class", "sonnet", "--rpm", "5"
    )
    assert "$1.000000" in run("limits", "spend", "--workspace", workspace, "--usd", "1")
    bad = runner.invoke(main, ["limits", "tier", "gold"])
    assert bad.exit_code != 0 and "unknown tier" in bad.output
    for amount, why in (
        ("ten dollars", "is not an amount in USD"),
        ("0.0000000000001", "more than 12 decimals"),
    ):
        refused = runner.invoke(main, ["credits", "add", "--usd", amount])
        assert refused.exit_code == 2 and why in refused.output, refused.output


def test_money_has_a_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One amount is at most $1,000,000 either way; a top-up may not carry the balance past $5,000,000
    nor a correction below $0 (64-bit picodollars): past either, a clean refusal and nothing changed —
    never a database overflow. Top-ups go on once $5,000,000 have been bought over time."""
    monkeypatch.setenv("WISEGATE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    for args in (["credits", "add", "--usd", "10000000"], ["limits", "spend", "--usd", "1000000.01"]):
        refused = runner.invoke(main, args)
        assert refused.exit_code == 2 and "out of range" in refused.output, refused.output
        assert "Traceback" not in refused.output
    for _ in range(5):
        assert runner.invoke(main, ["credits", "add", "--usd", "1000000"]).exit_code == 0
    over = runner.invoke(main, ["credits", "add", "--usd", "0.01"])
    assert over.exit_code == 1 and "may hold at most $5,000,000; it is $5000000.000000" in over.output
    shown = runner.invoke(main, ["credits", "show"]).output
    assert "credit balance\t$5000000.000000" in shown
    assert runner.invoke(main, ["credits", "add", "--usd", "-1000000"]).exit_code == 0
    again = runner.invoke(main, ["credits", "add", "--usd", "1000000"])  # $5M bought already: still fine
    assert again.exit_code == 0 and again.output.startswith("balance $5000000.000000\tpurchased $5000000"), (
        again.output
    )
    for _ in range(5):
        assert runner.invoke(main, ["credits", "add", "--usd", "-1000000"]).exit_code == 0
    below = runner.invoke(main, ["credits", "add", "--usd", "-0.01"])
    assert (
        below.exit_code == 1 and "may not take the credit balance below $0; it is $0.000000" in below.output
    )
    assert "credit balance\t$0.000000" in runner.invoke(main, ["credits", "show"]).output
    for nothing in ("0", "-0", "0.000"):
        refused = runner.invoke(main, ["credits", "add", "--usd", nothing])
        assert refused.exit_code == 1 and "must not be $0" in refused.output, refused.output


def test_amounts_and_notes_are_refused_as_the_console_refuses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WISEGATE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    for amount in ("1_000", "1e3", "٢٥", " 25", "+5", "Infinity"):
        refused = runner.invoke(main, ["credits", "add", "--usd", amount])
        assert refused.exit_code == 2 and "is not an amount in USD" in refused.output, (
            amount,
            refused.output,
        )
    for note, why in (("n" * 257, "at most 256 characters"), ("a\x1b[2Jb", "control characters")):
        refused = runner.invoke(main, ["credits", "add", "--usd", "1", "--note", note])
        assert refused.exit_code == 1 and "note: " in refused.output and why in refused.output, refused.output
    assert "credit balance\tnone" in runner.invoke(main, ["credits", "show"]).output
    assert runner.invoke(main, ["credits", "add", "--usd", "1", "--note", "n" * 256]).exit_code == 0
