"""Inspect and recover: where is an event, what happened to it, and put failed ones back.

Everything is read from what the receiver and RQ already keep, nothing extra is written on
the hot path: the seen ids (kept by `intake` for the dedupe window) say an event was
accepted; its RQ job (job id = event id) holds the status, the handlers already done
(`meta["handlers_done"]`), the retries left and the results with the last error; RQ's
per-queue registries say which events are queued, running, waiting for a retry, processed
or failed, newest last, so listing the recent ones never scans the keyspace.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

import redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import (
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.serializers import JSONSerializer

from . import capture
from .config import Settings
from .events import QUEUES, check_type_pattern, type_matches
from .intake import is_seen, secrets_last_verified
from .jobs import DONE_META_KEY, DUPLICATE_OF_META_KEY, FAILED_META_KEY, LAST_ERROR_META_KEY
from .rq_compat import queue_key
from .signature import fingerprint
from .worker import ABANDONED_META_KEY

# RQ's job statuses in the words the commands use.
STATUS_NAMES = {
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.STARTED: "running",
    JobStatus.SCHEDULED: "scheduled",
    JobStatus.FINISHED: "processed",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "failed",
    JobStatus.CANCELED: "canceled",
}
STATUSES = ("queued", "running", "scheduled", "processed", "failed")
# Where each status lives, per queue (the queue list itself for "queued").
REGISTRIES = {
    "running": StartedJobRegistry,
    "scheduled": ScheduledJobRegistry,
    "processed": FinishedJobRegistry,
    "failed": FailedJobRegistry,
}
# Runs before the last `failed retry`, which starts a fresh round of retries.
EARLIER_ATTEMPTS_META_KEY = "attempts_before_requeue"


@dataclass(frozen=True)
class EventInfo:
    id: str
    type: str
    status: str  # one of STATUSES, "canceled", or "expired" (seen, job details gone)
    queue: str = ""
    seen: bool = False
    enqueued_at: datetime | None = None
    ended_at: datetime | None = None
    attempts: int = 0
    retries_left: int | None = None
    handlers_done: tuple[str, ...] = ()
    last_error: str = ""
    envelope: dict = field(default_factory=dict, repr=False)
    # When the receiver first queued it (a requeue by `failed retry` leaves this alone).
    received_at: datetime | None = None
    # The handlers that raised in the latest run (empty once a run succeeds).
    handlers_failed: tuple[str, ...] = ()
    # Runs cut short by a lost worker (killed, out of memory), after which the event was
    # requeued; counted in `attempts` too.
    abandoned: int = 0
    # The event that delivered the same order transition first: this one ran no handler.
    duplicate_of: str = ""

    @property
    def last_activity(self) -> datetime:
        return self.ended_at or self.enqueued_at or datetime.fromtimestamp(0, UTC)

    @property
    def error_summary(self) -> str:
        """The last line of the last traceback: the exception and its message."""
        lines = [line for line in self.last_error.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def abandoned(job: Job) -> int:
    """How many runs of the job a lost worker left unfinished, each followed by a requeue
    (`worker.requeue_abandoned` counts them in the job)."""
    return int(job.meta.get(ABANDONED_META_KEY, 0))


def attempts(job: Job) -> int:
    """How many times the job function ran (or is running) for this event.

    RQ writes a result only for the final outcome, so this counts the retries used up
    (`retry_intervals` holds one interval per retry granted) plus the current run, plus
    the runs a lost worker left unfinished: those spend no retry, and leave no result.
    """
    granted = len(job.retry_intervals or ())
    used = max(granted - (job.retries_left or 0), 0)
    ran = job.get_status(refresh=False) in (
        JobStatus.STARTED, JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED,
    )  # fmt: skip
    return int(job.meta.get(EARLIER_ATTEMPTS_META_KEY, 0)) + used + int(ran) + abandoned(job)


def info_from_job(job: Job, seen: bool = False) -> EventInfo:
    envelope = job.args[0] if job.args and isinstance(job.args[0], dict) else {}
    status = job.get_status(refresh=False)
    last_error = ""
    if status != JobStatus.FINISHED:
        # RQ writes a result only for the final outcome; the error of a run that left the
        # job waiting for a retry is kept in the job by the worker.
        if status != JobStatus.FAILED:
            last_error = job.meta.get(LAST_ERROR_META_KEY, "")
        latest = job.latest_result() if not last_error else None
        if latest is not None and latest.type != Result.Type.SUCCESSFUL:
            last_error = latest.exc_string or ""
    return EventInfo(
        id=job.id,
        type=str(envelope.get("type", "?")),
        status=STATUS_NAMES.get(status, str(status)),
        queue=job.origin,
        seen=seen,
        enqueued_at=_aware(job.enqueued_at),
        ended_at=_aware(job.ended_at),
        attempts=attempts(job),
        retries_left=job.retries_left,
        handlers_done=tuple(job.meta.get(DONE_META_KEY, ())),
        last_error=last_error,
        envelope=envelope,
        received_at=_aware(job.created_at),
        handlers_failed=tuple(job.meta.get(FAILED_META_KEY, ())),
        abandoned=abandoned(job),
        duplicate_of=job.meta.get(DUPLICATE_OF_META_KEY, ""),
    )


def fetch_job(connection: redis.Redis, event_id: str) -> Job | None:
    try:
        return Job.fetch(event_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def show(
    connection: redis.Redis,
    event_id: str,
    dedupe_window: int = Settings.dedupe_window_seconds,
) -> EventInfo | None:
    """One event's status, or None when this Redis has no trace of it."""
    seen = is_seen(connection, event_id, dedupe_window)
    job = fetch_job(connection, event_id)
    if job is not None:
        return info_from_job(job, seen)
    if seen:
        # Accepted within the dedupe window, but RQ dropped the finished job's details.
        return EventInfo(id=event_id, type="?", status="expired", seen=True)
    return None


def _recent_ids(connection: redis.Redis, queue: str, status: str, limit: int) -> list[str]:
    if status == "queued":
        ids = connection.lrange(queue_key(queue), -limit, -1)
        return [i.decode() for i in reversed(ids)]
    registry = REGISTRIES[status](queue, connection=connection, serializer=JSONSerializer)
    # Read-only: no cleanup, which would move abandoned jobs around.
    return registry.get_job_ids(0, limit - 1, desc=True, cleanup=False)


def list_events(
    connection: redis.Redis,
    status: str | None = None,
    limit: int = 20,
    queues: Iterable[str] = QUEUES,
) -> list[EventInfo]:
    """The `limit` most recently active events (optionally of one status), newest first."""
    wanted = [status] if status else list(STATUSES)
    ids: list[str] = []
    for queue in queues:
        for name in wanted:
            ids += _recent_ids(connection, queue, name, limit)
    jobs = Job.fetch_many(list(dict.fromkeys(ids)), connection, serializer=JSONSerializer)
    infos = [info_from_job(job) for job in jobs if job is not None]
    if status:
        infos = [info for info in infos if info.status == status]
    infos.sort(key=lambda info: info.last_activity, reverse=True)
    return infos[:limit]


def failed_ids(connection: redis.Redis, queues: Iterable[str] = QUEUES) -> list[str]:
    ids: list[str] = []
    for queue in queues:
        registry = FailedJobRegistry(queue, connection=connection, serializer=JSONSerializer)
        ids += registry.get_job_ids(cleanup=False)
    return ids


# --- filters: which events a bulk command (or a page of the console) is about ----------

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
    """Whether the handler `name` (`package.handlers.orders.reserve_seats`, as the registry
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

    A generator: the failed registries are read in batches of `FETCH_BATCH` jobs (one round
    trip each), so a registry of any size never sits in memory at once. Read-only.
    """
    for queue in queues:
        ids = failed_ids(connection, [queue])
        for start in range(0, len(ids), FETCH_BATCH):
            batch = ids[start : start + FETCH_BATCH]
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


class NotFailed(LookupError):
    """The event is not in a failed registry (unknown, or not failed)."""


def retry(connection: redis.Redis, settings: Settings, event_id: str) -> Job:
    """Put a failed event back on its queue, with the configured retries again.

    The job keeps its `meta`, so the handlers that already succeeded for this event are
    skipped when it runs again; only the ones that failed are retried.
    """
    job = fetch_job(connection, event_id)
    if job is None:
        raise NotFailed(f"no job for event {event_id}")
    # The abandoned runs stay counted in the job's meta; `attempts` adds them itself.
    job.meta[EARLIER_ATTEMPTS_META_KEY] = attempts(job) - abandoned(job)
    job.meta.pop(LAST_ERROR_META_KEY, None)  # older than the final failure's result
    job.retries_left = settings.retry_max or None
    job.retry_intervals = settings.retry_intervals or None
    registry = FailedJobRegistry(job.origin, connection=connection, serializer=JSONSerializer)
    try:
        return registry.requeue(job)
    except InvalidJobOperation:
        status = STATUS_NAMES.get(job.get_status(refresh=False), "unknown")
        raise NotFailed(f"event {event_id} is not failed (it is {status})") from None


@dataclass(frozen=True)
class SecretUse:
    """One signing secret, named without revealing it, and when it last verified a
    delivery (by Redis' clock, on any receiver sharing this Redis)."""

    position: int | None  # in TW_WEBHOOK_SECRETS, from 1; None: not configured here
    fingerprint: str  # `signature.fingerprint(secret)`
    last_verified: datetime | None  # None: never, as far as this Redis remembers


def secret_usage(connection: redis.Redis, secrets: Iterable[str]) -> list[SecretUse]:
    """The configured secrets in order, then any other secret that verified deliveries on
    a receiver sharing this Redis (one still configured elsewhere), most recent first.

    A secret can go once its `last_verified` is older than the sender's retry window.
    """
    used = secrets_last_verified(connection)

    def when(print_: str) -> datetime | None:
        stamp = used.pop(print_, None)
        return datetime.fromtimestamp(stamp, UTC) if stamp is not None else None

    configured = [
        SecretUse(position, print_, when(print_))
        for position, print_ in enumerate(map(fingerprint, secrets), 1)
    ]
    others = sorted(used.items(), key=lambda item: item[1], reverse=True)
    return configured + [SecretUse(None, print_, when(print_)) for print_, _ in others]


def captured(connection: redis.Redis, event_id: str) -> capture.Captured | None:
    """The archived delivery of `event_id`, when capture was on as it arrived."""
    return capture.find(connection, event_id)
