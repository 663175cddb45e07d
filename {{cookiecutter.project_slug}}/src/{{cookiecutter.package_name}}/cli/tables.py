"""How the commands print moments and tables: plain text a person reads in a terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..event_status import EventInfo


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def ago(moment: datetime, now: datetime) -> str:
    seconds = max(int((now - moment).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def table(rows: Sequence[Sequence[str]]) -> str:
    """`rows` (a heading first) in columns two spaces apart. Every column is padded but the
    last, which may be long (an error): nothing after it to line up."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*map(str.ljust, row, widths), row[-1]]).rstrip() for row in rows)


def event_table(infos: Sequence[EventInfo]) -> str:
    """One line per event, for `events list` and `failed list` (`events show` has it all)."""
    rows = [("id", "type", "status", "tries", "last activity", "error")]
    for info in infos:
        rows.append((
            info.id, info.type, info.status, str(info.attempts),
            when(info.ended_at or info.enqueued_at), info.error_summary,
        ))  # fmt: skip
    return table(rows)
