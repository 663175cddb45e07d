"""Draw the generated project's Grafana dashboard from real Prometheus data, as a PNG.

The data comes from the generated project's own monitoring test, which can keep each
panel's series (Prometheus `query_range`, 1 s steps) while a real receiver and worker
handle test traffic. This lays the panels out as `dashboard.json` does (24 columns), draws
each as SVG in a page styled like Grafana's dark theme, and has headless chromium take a
screenshot. Nothing is made up: a panel without data says "No data", as Grafana would.

    cookiecutter --no-input -o BAKE .
    cd BAKE/tw-webhook-receiver
    DASHBOARD_DATA=panels.json PYTHONPATH=src python -m pytest tests/test_monitoring.py
    cd - && python scripts/draw_dashboard.py BAKE/tw-webhook-receiver/panels.json \\
        '{{cookiecutter.project_slug}}/docs/dashboard.png'
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

WIDTH = 1600
COLUMN = WIDTH / 24
ROW = 34  # pixels per grid unit of height
PALETTE = [
    "#73bf69",
    "#f2cc0c",
    "#8ab8ff",
    "#ff780a",
    "#f2495c",
    "#5794f2",
    "#b877d9",
    "#fade2a",
]
UNITS = {"reqps": " req/s", "ops": " ops/s", "s": " s", "short": "", "none": ""}


def legend_of(series: dict) -> str:
    text = series["legend"] or ", ".join(f"{k}={v}" for k, v in series["labels"].items())
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: series["labels"].get(m.group(1), ""), text)


def number(value: float, unit: str) -> str:
    if unit == "s" and 0 < abs(value) < 1:
        return f"{value * 1000:.3g} ms"
    if abs(value) >= 1000:
        return f"{value / 1000:.3g}k{UNITS.get(unit, '')}"
    return f"{value:.3g}{UNITS.get(unit, '')}"


def points(series: dict) -> list[tuple[float, float]]:
    found = []
    for stamp, raw in series["values"]:
        value = float(raw)
        if math.isfinite(value):
            found.append((float(stamp), value))
    return found


def timeseries(panel: dict, width: float, height: float, start: float, end: float) -> str:
    unit = panel["fieldConfig"]["defaults"].get("unit", "short")
    lines = [(legend_of(s), points(s)) for s in panel["series"]]
    lines = [(legend, pts) for legend, pts in lines if pts]
    if not lines:
        return no_data(width, height)
    left, top, right = 64, 8, 12
    # As many legend columns (up to 3) as fit the longest legend, at about 6 px a character.
    longest = max(len(legend) for legend, _ in lines)
    columns = max(1, min(3, int((width - left - right) // (longest * 6 + 26))))
    legend_rows = math.ceil(len(lines) / columns)
    bottom = 24 + 18 * legend_rows
    plot_w, plot_h = width - left - right, height - top - bottom
    high = max(v for _, pts in lines for _, v in pts)
    high = high * 1.1 if high > 0 else 1.0

    def x(t: float) -> float:
        return left + (t - start) / (end - start) * plot_w

    def y(v: float) -> float:
        return top + plot_h - v / high * plot_h

    parts = [f'<svg width="{width:.0f}" height="{height:.0f}">']
    for i in range(5):
        value = high * i / 4
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'stroke="#2f3237"/>'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{html.escape(number(value, unit))}</text>"
        )
    ticks = 5 if plot_w > 500 else 3
    label_y = top + plot_h + 16
    for i in range(ticks + 1):
        t = start + (end - start) * i / ticks
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        parts.append(
            f'<text x="{x(t):.1f}" y="{label_y:.1f}" text-anchor="{anchor}">{label}</text>'
        )
    for index, (legend, pts) in enumerate(lines):
        color = PALETTE[index % len(PALETTE)]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        column, row = index % columns, index // columns
        lx = left + column * plot_w / columns
        ly = top + plot_h + 34 + row * 18
        fits = int((plot_w / columns - 26) / 6)  # characters, at about 6 px each
        head = min(12, fits // 3)  # keep both ends: "p99 failing_…fail_marked_orders"
        text = legend if len(legend) <= fits else legend[:head] + "…" + legend[head - fits + 1 :]
        parts.append(
            f'<rect x="{lx:.1f}" y="{ly - 9:.1f}" width="14" height="4" fill="{color}"/>'
            f'<text x="{lx + 20:.1f}" y="{ly - 4:.1f}">{html.escape(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def stat(panel: dict, width: float, height: float) -> str:
    values = [pts[-1][1] for pts in map(points, panel["series"]) if pts]
    if not values:
        return no_data(width, height)
    unit = panel["fieldConfig"]["defaults"].get("unit", "none")
    return (
        f'<svg width="{width:.0f}" height="{height:.0f}"><text x="{width / 2:.0f}" '
        f'y="{height / 2 + 18:.0f}" text-anchor="middle" class="stat">'
        f"{html.escape(number(values[-1], unit))}</text></svg>"
    )


def no_data(width: float, height: float) -> str:
    return (
        f'<svg width="{width:.0f}" height="{height:.0f}"><text x="{width / 2:.0f}" '
        f'y="{height / 2:.0f}" text-anchor="middle" class="nodata">No data</text></svg>'
    )


def page(panels: list[dict]) -> str:
    stamps = [float(v[0]) for p in panels for s in p["series"] for v in s["values"]]
    start, end = min(stamps), max(stamps)
    boxes = []
    bottom = 0
    for panel in panels:
        grid = panel["gridPos"]
        left, top = grid["x"] * COLUMN, grid["y"] * ROW
        width, height = grid["w"] * COLUMN - 8, grid["h"] * ROW - 8
        bottom = max(bottom, top + height)
        title = html.escape(panel["title"])
        if panel["type"] == "row":
            boxes.append(f'<div class="row" style="left:{left}px;top:{top}px">{title}</div>')
            continue
        body_h = height - 30
        if panel["type"] == "stat":
            body = stat(panel, width, body_h)
        else:
            body = timeseries(panel, width, body_h, start, end)
        boxes.append(
            f'<div class="panel" style="left:{left}px;top:{top}px;width:{width}px;'
            f'height:{height}px"><div class="title">{title}</div>{body}</div>'
        )
    return (
        f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #111217; font: 12px Inter, Helvetica, Arial, sans-serif;
       color: #ccccdc; }}
.board {{ position: relative; width: {WIDTH}px; height: {bottom + 16}px; margin: 12px; }}
.panel {{ position: absolute; background: #181b1f; border: 1px solid #2c3235;
          border-radius: 3px; overflow: hidden; }}
.title {{ height: 30px; line-height: 30px; padding: 0 10px; font-weight: 500; }}
.row {{ position: absolute; font-size: 15px; font-weight: 500; }}
svg text {{ fill: #a7a9b1; font-size: 11px; }}
svg text.stat {{ fill: #73bf69; font-size: 44px; font-weight: 500; }}
svg text.nodata {{ fill: #6e7079; font-size: 14px; }}
</style></head><body><div class="board">{"".join(boxes)}</div></body></html>""",
        bottom + 40,
    )


def main() -> int:
    data, out = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
    document, height = page(json.loads(data.read_text()))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("chromium not found", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "dashboard.html"
        page_path.write_text(document)
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--user-data-dir={tmp}/profile", f"--window-size={WIDTH + 24},{height:.0f}",
                f"--screenshot={out}", page_path.as_uri(),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
