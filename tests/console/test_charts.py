"""Bar geometry for the usage page's inline SVG."""

from __future__ import annotations

from wisegate.console.charts import HEIGHT, stacked_bars


def test_stacked_bars_scale_to_the_tallest_day() -> None:
    chart = stacked_bars("t", ["2026-11-01", "2026-11-02"], {"a": [10, 0], "b": [30, 20]}, str)
    assert chart.top_label == "40" and not chart.empty
    first_day = [r for r in chart.rects if r.title.startswith("2026-11-01")]
    assert [r.title for r in first_day] == ["2026-11-01 · a: 10", "2026-11-01 · b: 30"]
    assert sum(r.height for r in first_day) == chart.baseline - 12  # the full plot height
    second = [r for r in chart.rects if r.title.startswith("2026-11-02")]
    assert len(second) == 1 and abs(second[0].height - (chart.baseline - 12) / 2) < 0.01
    assert first_day[1].y + first_day[1].height == first_day[0].y  # b stacks on a
    assert [label.text for label in chart.labels] == ["11-01", "11-02"]
    assert [name for _, name in chart.legend] == ["a", "b"]


def test_an_empty_period_draws_no_bars() -> None:
    chart = stacked_bars("t", ["2026-11-01"], {}, str)
    assert chart.empty and chart.rects == [] and chart.height == HEIGHT
