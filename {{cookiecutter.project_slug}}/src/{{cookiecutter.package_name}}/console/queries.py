"""What the console's pages show, read from Redis: the overview's figures and the event
searches. The events themselves come from `event_status`, `event_filters` and `capture`,
as for the `events` and `failed` commands; this adds only what a page needs on top.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import utcparse

from .. import capture, event_filters, event_status, reconcile, tallies
from ..config import Settings
from ..intake import open_queues
from ..jobs import ERRORS_META_KEY, HandlerFailed

# How many of the most recent events a filtered search looks through.
SCAN_LIMIT = 500


@dataclass(frozen=True)
class QueueState:
    name: str
    depth: int
    oldest_age: float | None  # seconds the oldest waiting job has waited
    retrying: int
    failed: int


@dataclass(frozen=True)
class Overview:
    queues: list[QueueState]
    workers: int
    deliveries: list[tuple[int, dict[str, int]]]  # per minute, oldest first
    handlers: list[tuple[int, dict[str, int]]]
    handler_failures: list[tuple[str, int, int]]  # (handler, failed, ok) over the hour
    captured: int
    # Reconciliation: its latest pass (`reconcile.Report` as JSON) and its totals.
    reconcile_run: dict | None = None
    reconcile_totals: dict[str, int] = field(default_factory=dict)

    @property
    def missed(self) -> int:
        """Synthetic events fed in all: order changes whose webhooks never arrived."""
        return sum(n for k, n in self.reconcile_totals.items() if k.startswith("events:"))

    @property
    def failed(self) -> int:
        return sum(queue.failed for queue in self.queues)


def queue_states(connection: redis.Redis, now: float | None = None) -> list[QueueState]:
    """Depth, oldest job's age, retries waiting and failed count per queue (two round trips)."""
    queues = open_queues(connection)
    pipe = connection.pipeline(transaction=False)
    for queue in queues.values():
        pipe.llen(queue.key)
        pipe.lindex(queue.key, 0)  # RQ appends: the head waited longest
        pipe.zcard(queue.scheduled_job_registry.key)
        pipe.zcard(queue.failed_job_registry.key)
    counts = pipe.execute()
    heads = counts[1::4]
    pipe = connection.pipeline(transaction=False)
    for head in heads:
        pipe.hget(Job.key_for(head.decode()) if head else "tw:none", "enqueued_at")
    enqueued = pipe.execute()
    now = time.time() if now is None else now
    states = []
    for index, name in enumerate(queues):
        depth, _head, retrying, failed = counts[4 * index : 4 * index + 4]
        at = enqueued[index]
        age = max(now - utcparse(at.decode()).timestamp(), 0.0) if at else None
        states.append(QueueState(name, depth, age, retrying, failed))
    return states


def handler_totals(rows: list[tuple[int, dict[str, int]]]) -> list[tuple[str, int, int]]:
    """(handler, failed runs, successful runs) over `rows` of the `handlers` series, the
    most failures first."""
    failed: Counter[str] = Counter()
    ok: Counter[str] = Counter()
    for _minute, counts in rows:
        for name, number in counts.items():
            outcome, _, handler = name.partition(":")
            (failed if outcome == "failed" else ok)[handler] += number
    names = sorted(set(failed) | set(ok), key=lambda name: (-failed[name], name))
    return [(name, failed[name], ok[name]) for name in names]


def overview(connection: redis.Redis, minutes: int = 60) -> Overview:
    handlers = tallies.read(connection, tallies.HANDLERS, minutes)
    return Overview(
        queues=queue_states(connection),
        workers=len(Worker.all(connection=connection, serializer=JSONSerializer)),
        deliveries=tallies.read(connection, tallies.DELIVERIES, minutes),
        handlers=handlers,
        handler_failures=handler_totals(handlers),
        captured=capture.size(connection),
        reconcile_run=next(iter(reconcile.last_runs(connection, 1)), None),
        reconcile_totals=reconcile.totals(connection),
    )


@dataclass(frozen=True)
class EventQuery:
    """The events pages' filters: the commands' `EventFilter` (type pattern, failing
    handler, receipt time), plus a status and a part of the id."""

    status: str = ""
    id: str = ""
    filter: event_filters.EventFilter = field(default_factory=event_filters.EventFilter)

    @property
    def narrowing(self) -> bool:
        return bool(self.id) or not self.filter.empty

    def matches(self, info: event_status.EventInfo) -> bool:
        return self.id in info.id and self.filter.matches(info)


@dataclass
class Page:
    events: list[event_status.EventInfo] = field(default_factory=list)
    more: bool = False  # a next page exists
    scanned: int = 0  # events looked through, when the search was limited to SCAN_LIMIT


def show(
    connection: redis.Redis,
    event_id: str,
    dedupe_window: int = Settings.dedupe_window_seconds,
) -> event_status.EventInfo | None:
    """`event_status.show`, or None for what cannot even be an event id (as typed into a
    URL or a filter: RQ refuses to look such an id up)."""
    try:
        return event_status.show(connection, event_id, dedupe_window)
    except ValueError:
        return None


def find_events(connection: redis.Redis, query: EventQuery, offset: int, size: int) -> Page:
    """One page of the most recently active events that match `query`, newest first.

    Without a narrowing filter only as many events as the page needs are read. Failed
    events are filtered over the whole failed registry (`failed_matching`, as `failed
    retry` selects them); other statuses over the `SCAN_LIMIT` most recent. An exact id
    is also looked up directly, so an old event is found by its id alone.
    """
    status = query.status or None
    if not query.narrowing:
        found = event_status.list_events(connection, status, offset + size + 1)
        return Page(found[offset : offset + size], len(found) > offset + size)
    scanned = 0
    if status == "failed":
        found = list(event_filters.failed_matching(connection, query.filter))
        found = [info for info in found if query.matches(info)]
    else:
        recent = event_status.list_events(connection, status, SCAN_LIMIT)
        found = [info for info in recent if query.matches(info)]
        scanned = len(recent) if len(recent) >= SCAN_LIMIT else 0
    if query.id and not any(info.id == query.id for info in found):
        exact = show(connection, query.id)
        if exact is not None and query.matches(exact) and (not status or exact.status == status):
            found.insert(0, exact)
    found.sort(key=lambda info: info.last_activity, reverse=True)
    return Page(found[offset : offset + size], len(found) > offset + size, scanned)


def attempts(connection: redis.Redis, event_id: str) -> list[dict]:
    """An event's runs, oldest first: each failed run with its handlers' tracebacks (kept
    by the job function), and the outcomes RQ recorded (one per round of retries) other
    than a `HandlerFailed`, which only repeats the failed run's own record."""
    job = event_status.fetch_job(connection, event_id)
    if job is None:
        return []
    rows = [
        {"at": datetime.fromtimestamp(run["at"], UTC), "outcome": "failed", "error": run["error"]}
        for run in job.meta.get(ERRORS_META_KEY, ())
    ]
    for result in job.results():
        error = (result.exc_string or "").strip()
        if error and HandlerFailed.__name__ in error.splitlines()[-1]:
            continue
        at = result.created_at
        outcome = result.type.name.lower().replace("_", " ")
        rows.append({"at": at.replace(tzinfo=at.tzinfo or UTC), "outcome": outcome, "error": error})
    return sorted(rows, key=lambda row: row["at"])


def pretty_json(body: bytes | dict) -> str:
    """An envelope indented for reading; a body that is not JSON is shown as it came."""
    if isinstance(body, dict):
        return json.dumps(body, indent=2, ensure_ascii=False, sort_keys=False)
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body.decode("utf-8", "replace")


def shown_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    """Captured headers for display. The archive keeps no secret headers; any that an
    older archive held are shown with their value redacted, never the value."""
    return sorted(
        (name, "[redacted]" if capture.is_secret_header(name) else value)
        for name, value in headers.items()
    )
