"""Small bar charts as inline SVG geometry: computed here, drawn by the templates.

No JavaScript and no chart library: one stacked bar per minute, a hover title on each
bar, and the largest value written next to the chart, which is all a person on call needs
to see when things started to go wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    y: float
    height: float
    css_class: str


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    title: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    peak: int  # the tallest bar's total
    total: dict[str, int]  # per field over the whole span


def stacked_bars(
    rows: list[tuple[int, dict[str, int]]],
    fields: dict[str, str],
    width: int = 600,
    height: int = 90,
) -> Chart:
    """One bar per row (minute), stacking `fields` (field -> CSS class) bottom up in order.

    Counts under fields not named are ignored. Heights scale to the tallest bar, so a
    single event in an empty hour still shows.
    """
    totals = [sum(counts.get(name, 0) for name in fields) for _minute, counts in rows]
    peak = max(totals, default=0)
    slot = width / max(len(rows), 1)
    bars = []
    for (minute, counts), total in zip(rows, totals, strict=True):
        segments = []
        base = float(height)
        for name, css_class in fields.items():
            value = counts.get(name, 0)
            if not value:
                continue
            size = value / peak * height
            base -= size
            segments.append(Segment(round(base, 2), round(size, 2), css_class))
        label = time.strftime("%H:%M", time.gmtime(minute * 60))
        detail = ", ".join(f"{counts.get(name, 0)} {name}" for name in fields)
        bars.append(
            Bar(
                x=round(len(bars) * slot, 2),
                width=round(max(slot - 1, 1), 2),
                title=f"{label} UTC: {detail}" if total else f"{label} UTC: none",
                segments=tuple(segments),
            )
        )
    sums = {name: sum(counts.get(name, 0) for _minute, counts in rows) for name in fields}
    return Chart(width, height, tuple(bars), peak, sums)
