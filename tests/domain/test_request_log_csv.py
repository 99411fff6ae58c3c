"""The request log's CSV never hands a spreadsheet a formula: a key or workspace name is text."""

from __future__ import annotations

import pytest

from wisegate.domain.request_log import inert_cell


@pytest.mark.parametrize("name", ['=HYPERLINK("http://evil","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_a_cell_a_spreadsheet_would_evaluate_is_quoted(name: str) -> None:
    assert inert_cell(name) == "'" + name


def test_plain_cells_are_unchanged() -> None:
    assert [inert_cell(v) for v in ("logger", "req_01abc", "2026-11-30T10:00:00+00:00", 12, "")] == [
        "logger",
        "req_01abc",
        "2026-11-30T10:00:00+00:00",
        12,
        "",
    ]
