"""Put failed events back: the one write of `failed retry` and the console's retry buttons.

Everything else about events is read-only (`event_status`, `event_filters`).
"""

from __future__ import annotations

import redis
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from .config import Settings
from .event_status import (
    EARLIER_ATTEMPTS_META_KEY,
    STATUS_NAMES,
    abandoned,
    attempts,
    fetch_job,
)
from .jobs import LAST_ERROR_META_KEY


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
