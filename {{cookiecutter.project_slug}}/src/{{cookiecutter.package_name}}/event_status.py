"""Where is an event and what happened to it: the reads behind `events` and `failed`.

Everything is read from what the receiver and RQ already keep, nothing extra is written on
the hot path: the seen ids (kept by `intake` for the dedupe window) say an event was
accepted; its RQ job (job id = event id) holds the status, the handlers already done
(`meta["handlers_done"]`), the retries left and the results with the last error; RQ's
per-queue registries say which events are queued, running, waiting for a retry, processed
or failed, newest last, so listing the recent ones never scans the keyspace, and a whole
failed registry is read a page at a time (`failed_ids`), never held in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from rq.exceptions import NoSuchJobError
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
from .events import QUEUES
from .intake import is_seen
from .jobs import DONE_META_KEY, DUPLICATE_OF_META_KEY, FAILED_META_KEY, LAST_ERROR_META_KEY
from .rq_compat import queue_key
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
    """The job of `event_id`, or None when there is none: RQ raises ValueError for an id
    it could never have written (`evt.1`, a space), which is a typo, not a bug."""
    try:
        return Job.fetch(event_id, connection=connection, serializer=JSONSerializer)
    except (NoSuchJobError, ValueError):
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


# Ids read per round trip from a failed registry.
ID_PAGE = 500


def failed_ids(connection: redis.Redis, queues: Iterable[str] = QUEUES) -> Iterator[str]:
    """The ids in the failed registries, queue by queue, oldest failure first.

    A generator reading `ID_PAGE` ids per round trip, so a registry of any size never sits
    in memory at once. Read-only (no cleanup, which would move abandoned jobs around).
    """
    for queue in queues:
        registry = FailedJobRegistry(queue, connection=connection, serializer=JSONSerializer)
        for member in _sorted_set_pages(connection, registry.key, ID_PAGE):
            yield member.decode()


def _sorted_set_pages(connection: redis.Redis, key: str, page: int) -> Iterator[bytes]:
    """The members of the sorted set `key` in its order (score, then member), `page` a time.

    Each page resumes by score after the last member yielded, never by rank: a member
    removed meanwhile (retried, expired by RQ's cleanup) shifts every rank after it, and one
    that failed again moves to a later score; a rank cursor would skip what lay between.
    Members tied on a score sort by their bytes, in Redis as in Python, so the ones already
    yielded are passed over; a run of ties longer than a page is stepped over page by page.
    """
    after = None  # (score, member) of the last one yielded
    skip = 0  # members from the cursor's score on that a page of ties has already shown
    while True:
        low = "-inf" if after is None else repr(after[0])
        rows = connection.zrangebyscore(key, low, "+inf", start=skip, num=page, withscores=True)
        fresh = [
            (member, score) for member, score in rows if after is None or (score, member) > after
        ]
        yield from (member for member, _ in fresh)
        if len(rows) < page:
            return
        if fresh:
            member, score = fresh[-1]
            after, skip = (score, member), 0
        else:
            skip += page


def captured(connection: redis.Redis, event_id: str) -> capture.Captured | None:
    """The archived delivery of `event_id`, when capture was on as it arrived."""
    return capture.find(connection, event_id)
