"""Bar charts as geometry for inline SVG: stacked bars per day, computed here, drawn by a template macro.

No chart library and nothing loaded at run time: the page gets ``<rect>`` elements with a ``<title>``
each (the browser's tooltip), an axis label for the largest value and a legend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# Series colours (colour-blind-friendly order), as SVG fill attributes.
COLORS = ("#4A6FD9", "#D98A2B", "#3FA66B", "#C2504A", "#8E6CC2", "#2E9C9C", "#B5478F", "#8E6C4A")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 220, 64, 28, 12


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    width: int
    height: int
    rects: list[Rect]
    labels: list[Label]
    legend: list[tuple[str, str]]  # (colour, series name)
    top_label: str
    baseline: float
    empty: bool


def stacked_bars(
    title: str,
    days: Sequence[str],
    series: Mapping[str, Sequence[float]],
    fmt: Callable[[float], str],
) -> Chart:
    """One bar per day; each series stacks a segment in its colour. ``series`` values align with ``days``."""
    names = list(series)
    totals = [sum(series[name][i] for name in names) for i in range(len(days))]
    peak = max(totals, default=0.0)
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(days), 1)
    bar_w = max(slot * 0.7, 1.0)
    rects: list[Rect] = []
    labels: list[Label] = []
    for i, day in enumerate(days):
        x = LEFT + i * slot + (slot - bar_w) / 2
        y = float(HEIGHT - BOTTOM)
        for n, name in enumerate(names):
            value = series[name][i]
            if value <= 0 or peak <= 0:
                continue
            h = value / peak * plot_h
            y -= h
            rects.append(
                Rect(
                    round(x, 2),
                    round(y, 2),
                    round(bar_w, 2),
                    round(h, 2),
                    _color(n),
                    f"{day} · {name}: {fmt(value)}",
                )
            )
        if len(days) <= 16 or i % 2 == 0:
            labels.append(Label(round(x + bar_w / 2, 2), HEIGHT - 8, day[5:]))
    return Chart(
        title=title,
        width=WIDTH,
        height=HEIGHT,
        rects=rects,
        labels=labels,
        legend=[(_color(n), name) for n, name in enumerate(names)],
        top_label=fmt(peak),
        baseline=HEIGHT - BOTTOM,
        empty=peak <= 0,
    )


def _color(index: int) -> str:
    return COLORS[index % len(COLORS)]
