"""Which events a bulk command, or a page of the console, is about: `EventFilter`, the
times people type (`parse_moment`), and the failed events and archived deliveries a
filter selects. Shared by `failed list`, `failed retry`, `events export` and the console,
so they all select alike. Read-only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import BinaryIO

import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from . import capture
from .event_status import EventInfo, failed_ids, fetch_job, info_from_job
from .events import QUEUES, check_type_pattern, type_matches
from .jobs import FAILED_META_KEY

# `2h` in `--since 2h`: that long before now.
_RELATIVE_TIME = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LAST_MOMENT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
# Jobs fetched per round trip while filtering a registry.
FETCH_BATCH = 500


def parse_moment(value: str, now: float | None = None) -> float:
    """A point in time as unix seconds, from what a person types.

    Accepts unix seconds (`1764547200`), an ISO 8601 date or date/time (`2026-12-01`,
    `2026-12-01T14:30`, UTC unless it carries an offset), or a time ago: a number and one of
    `s`, `m`, `h`, `d` (`90s`, `15m`, `2h`, `3d`). Raises `ValueError` with the forms it
    takes otherwise.
    """
    value = value.strip()
    relative = _RELATIVE_TIME.fullmatch(value)
    if relative:
        amount, unit = relative.groups()
        moment = (time.time() if now is None else now) - float(amount) * _UNIT_SECONDS[unit]
    elif value.replace(".", "", 1).isdigit():
        moment = float(value)
    else:
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"want unix seconds, an ISO date/time (2026-12-01T14:30) or a time ago "
                f"(90s, 15m, 2h, 3d), got {value!r}"
            ) from None
        moment = (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    if not 0 <= moment <= _LAST_MOMENT:
        # Redis stream ids, datetime and the clock all end somewhere; a filter past them
        # is a typing slip, not a question about Redis.
        raise ValueError(f"{value!r} is out of range: want a time from 1970 to the year 9999")
    return moment


def handler_matches(wanted: str, name: str) -> bool:
    """Whether the handler `name` (`package.handlers.orders.reserve_seats`, as `routing`
    names handlers) is the one a person meant by `wanted`: its full name or any dotted
    tail of it (`reserve_seats`, `orders.reserve_seats`)."""
    return name == wanted or name.endswith("." + wanted)


@dataclass(frozen=True)
class EventFilter:
    """Which events a bulk command is about; every criterion given must hold.

    - `event_type`: a type pattern as `@on` takes them (`order.created`, `order.*`, `*`);
    - `handler`: a handler that raised in the event's latest run, by full name or a dotted
      tail of it (see `handler_matches`);
    - `since` / `until`: unix seconds; received at or after `since`, and before `until`.

    An empty filter matches everything. Built once from command-line options or query
    parameters (`parse_moment` reads times) and shared by `failed list`, `failed retry`,
    `events export` and the console, so they all select alike.
    """

    event_type: str | None = None
    handler: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.event_type is not None:
            check_type_pattern(self.event_type)  # a ValueError says what a pattern is

    @property
    def empty(self) -> bool:
        return self == EventFilter()

    def matches_type_and_time(self, event_type: str, received: float | None) -> bool:
        """The type and time criteria alone (for records that know nothing of handlers)."""
        if self.event_type is not None and not type_matches(self.event_type, event_type):
            return False
        if self.since is not None and (received is None or received < self.since):
            return False
        return self.until is None or (received is not None and received < self.until)

    def matches_handlers(self, handlers_failed: Iterable[str]) -> bool:
        """The handler criterion alone: true when none is set or one of these is it."""
        if self.handler is None:
            return True
        return any(handler_matches(self.handler, name) for name in handlers_failed)

    def matches(self, info: EventInfo) -> bool:
        """Whether the event `info` describes meets every criterion."""
        received = info.received_at.timestamp() if info.received_at else None
        return self.matches_type_and_time(info.type, received) and self.matches_handlers(
            info.handlers_failed
        )

    def describe(self) -> str:
        """The criteria in words, for messages (`type order.*, handler mails`), or ''."""
        parts = []
        if self.event_type is not None:
            parts.append(f"type {self.event_type}")
        if self.handler is not None:
            parts.append(f"handler {self.handler}")
        for word, moment in (("since", self.since), ("until", self.until)):
            if moment is not None:
                parts.append(f"{word} {datetime.fromtimestamp(moment, UTC):%Y-%m-%d %H:%M:%SZ}")
        return ", ".join(parts)


def failed_matching(
    connection: redis.Redis,
    event_filter: EventFilter = EventFilter(),
    queues: Iterable[str] = QUEUES,
) -> Iterator[EventInfo]:
    """The failed events `event_filter` selects, queue by queue, oldest failure first.

    A generator: the ids come a page at a time (`event_status.failed_ids`) and their jobs
    in batches of `FETCH_BATCH` (one round trip each), so a registry of any size never
    sits in memory at once.
    """
    ids = failed_ids(connection, queues)
    while batch := list(islice(ids, FETCH_BATCH)):
        for job in Job.fetch_many(batch, connection, serializer=JSONSerializer):
            if job is None:
                continue  # expired between the two reads
            info = info_from_job(job)
            if event_filter.matches(info):
                yield info


def _handler_test(
    connection: redis.Redis, event_filter: EventFilter
) -> Callable[[capture.Captured], bool] | None:
    """The handler criterion for archived deliveries, which record only the delivery: it
    reads each one's job (one round trip per entry). None when no handler is asked for."""
    if event_filter.handler is None:
        return None

    def keep(captured: capture.Captured) -> bool:
        job = fetch_job(connection, captured.event_id)
        failed = job.meta.get(FAILED_META_KEY, ()) if job is not None else ()
        return event_filter.matches_handlers(failed)

    return keep


def captured_matching(
    connection: redis.Redis, event_filter: EventFilter = EventFilter()
) -> Iterator[capture.Captured]:
    """The archived deliveries (see `capture`) `event_filter` selects, oldest first.

    Type and time select a range of the archive; a handler criterion then reads the job of
    each entry in that range.
    """
    entries = capture.read(
        connection, event_filter.since, event_filter.event_type, until=event_filter.until
    )
    keep = _handler_test(connection, event_filter)
    return entries if keep is None else filter(keep, entries)


def export_matching(
    connection: redis.Redis,
    out: BinaryIO,
    event_filter: EventFilter = EventFilter(),
    limit: int | None = None,
) -> int:
    """`capture.export` of the archived events `event_filter` selects (the newest `limit`
    of them when given), as JSON Lines oldest first; returns the number written."""
    return capture.export(
        connection,
        out,
        event_filter.since,
        event_filter.event_type,
        limit,
        until=event_filter.until,
        keep=_handler_test(connection, event_filter),
    )
