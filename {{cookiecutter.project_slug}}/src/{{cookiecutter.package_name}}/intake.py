"""Dedupe and enqueue: the one place that writes to Redis when an event arrives.

The receiver may answer 2xx only once the event is safely in its RQ queue, and must never
enqueue the same event id twice within the dedupe window, even when two copies reach two
web workers at the same instant. Both promises come from one Lua script, which Redis runs
without interleaving any other command: if the event's "seen" marker is absent, it writes
the RQ job, pushes its id onto the queue, and only then sets the marker. No state exists
in which an event is marked seen but not queued, and one round trip per event is all it
costs.

The job itself is built by RQ (`Queue.create_job`) and written field for field as
`Queue.enqueue_job` would write it, so RQ workers, dashboards and registries see an
ordinary job that carries the envelope as JSON.
"""

from __future__ import annotations

from typing import Any

import redis
from rq import Queue, Retry
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now

from .config import Settings
from .events import QUEUES, queue_for

SEEN_PREFIX = "tw:seen:"
JOB_FUNCTION = f"{__package__}.jobs.handle_event"
# How long RQ keeps a finished job (and so the details `events show` prints).
RESULT_TTL_SECONDS = 24 * 3600

ENQUEUE_IF_NEW = """
-- KEYS: seen marker, job hash, queue list, RQ's set of queue keys
-- ARGV: job id, dedupe window in seconds, then the job hash as field, value, ...
-- Redis does not roll a script back when a command in it fails, so the marker is set
-- last: a failure part-way leaves the event unmarked, and the sender's retry redoes it.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SADD', KEYS[4], KEYS[3])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
return 1
"""


def seen_key(event_id: str) -> str:
    return SEEN_PREFIX + event_id


def open_queues(connection: redis.Redis) -> dict[str, Queue]:
    """The project's RQ queues by name, all with the JSON serializer (never pickle)."""
    return {name: Queue(name, connection=connection, serializer=JSONSerializer) for name in QUEUES}


class Intake:
    """Records events as seen and queues them, exactly once per event id."""

    def __init__(self, connection: redis.Redis, settings: Settings):
        self.connection = connection
        self.queues = open_queues(connection)
        self.dedupe_window = settings.dedupe_window_seconds
        self.job_timeout = settings.job_timeout_seconds
        self.retry = (
            Retry(max=settings.retry_max, interval=settings.retry_intervals)
            if settings.retry_max
            else None
        )
        self._enqueue_if_new = connection.register_script(ENQUEUE_IF_NEW)

    def submit(self, envelope: dict[str, Any]) -> bool:
        """Queue a validated envelope; return False when its id was seen already.

        Raises `redis.RedisError` when Redis cannot be reached; nothing is recorded then.
        """
        queue = self.queues[queue_for(envelope["type"])]
        job = queue.create_job(
            JOB_FUNCTION,
            args=(envelope,),
            job_id=envelope["id"],
            timeout=self.job_timeout,
            result_ttl=RESULT_TTL_SECONDS,
            description=f"{envelope['type']} {envelope['id']}",
            retry=self.retry,
        )
        job.origin = queue.name
        job.enqueued_at = now()
        job._status = JobStatus.QUEUED
        fields: list[Any] = []
        for name, value in job.to_dict().items():
            if value is not None:
                fields += (name, value)
        added = self._enqueue_if_new(
            keys=[seen_key(job.id), job.key, queue.key, queue.redis_queues_keys],
            args=[job.id, self.dedupe_window, *fields],
        )
        return bool(added)
