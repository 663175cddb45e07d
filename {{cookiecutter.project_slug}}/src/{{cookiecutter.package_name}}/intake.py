"""Dedupe and enqueue: the one place that writes to Redis when an event arrives.

The receiver may answer 2xx only once the event is safely in its RQ queue, and must never
enqueue the same event id twice within the dedupe window, even when two copies reach two
web workers at the same instant. Both promises come from one Lua script, which Redis runs
without interleaving any other command: if the event's id is not among the ids seen, it
writes the RQ job, pushes its id onto the queue, and only then records the id as seen. No
state exists in which an event is marked seen but not queued, and one round trip per
event is all it costs.

The same script keeps Redis from filling with work nobody drains: when the event's queue
already holds `TW_MAX_QUEUE_DEPTH` waiting jobs it stores nothing at all (not even the
seen mark) and the receiver answers 429, so the sender backs off and delivers again later.
It also notes, per signing secret, when one last verified a delivery (`SECRETS_USED_KEY`),
which tells an operator when an old secret can go; both cost no extra round trip.

Seen ids are kept in time buckets, one Redis set per `window / SEEN_BUCKETS` seconds of
Redis' own clock, each expiring as a whole once its newest id has been remembered for the
whole window. A key with its own TTL per id costs about 130 bytes of Redis memory; a set
member about 80. An id is therefore remembered for at least the window and at most one
bucket (an eighth of it) longer.

The job is an ordinary RQ job: its fields are those RQ's `Queue.create_job` and
`Job.to_dict` produce (less the empty placeholders, which RQ reads as unset), taken once
per queue when the intake is built, with the per-event ones (payload, timestamps,
description) filled in per event, so RQ workers, dashboards and registries see the job
`Queue.enqueue` would have written, without building an RQ `Job` object on every request.
Its payload is the JSON call RQ's serializer would write, built around the very bytes the
sender signed, and stored uncompressed, which RQ reads as well: the handler gets exactly
what was verified, and no request pays to re-encode or compress it. What this takes of
RQ's job format is in `rq_compat.py`, with the tests that hold RQ to it.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from .capture import STREAM_KEY as CAPTURE_STREAM_KEY
from .config import Settings
from .connection import NoReplicas, ScriptRunner
from .events import QUEUES, queue_for
from .replication import NotReplicated, Policy, require
from .rq_compat import call_framing, job_timestamp, queued_job_fields

SEEN_PREFIX = "tw:seen:"
# Hash: a signing secret's fingerprint -> unix seconds (Redis' clock) it last verified a
# delivery. One field per secret ever used, so it stays tiny.
SECRETS_USED_KEY = "tw:secrets:last_verified"
# The dedupe window is split into this many buckets (sets of ids), each at least 1 s.
SEEN_BUCKETS = 8
JOB_FUNCTION = f"{__package__}.jobs.handle_event"
# How long RQ keeps a finished job (and so the details `events show` prints).
RESULT_TTL_SECONDS = 24 * 3600

# Shared by the scripts below. ARGV starts: job id, seen prefix, window, bucket seconds.
# TIME comes from Redis, so every web process on every host agrees on the buckets (Redis
# before 7 needs effects replication to write after reading the clock).
_CLOCK = """
if redis.replicate_commands then redis.replicate_commands() end
local now = tonumber(redis.call('TIME')[1])
local window, bucket = tonumber(ARGV[3]), tonumber(ARGV[4])
local newest = math.floor(now / bucket)
"""
# The secret that verified this delivery (ARGV[6], its fingerprint) was in use now, whatever
# becomes of the event: a duplicate or a refusal was signed with it all the same.
_NOTE_SECRET = """
if ARGV[6] ~= '' then redis.call('HSET', KEYS[4], ARGV[6], now) end
"""
_SEEN_LOOP = """
for b = math.floor((now - window) / bucket), newest do
  if redis.call('SISMEMBER', ARGV[2] .. b, ARGV[1]) == 1 then
    return 0
  end
end
"""
# Backpressure (ARGV[5], the most jobs the queue may hold waiting; 0 for no limit): a full
# queue refuses the event before anything of it is written.
_CHECK_ROOM = """
local max_depth = tonumber(ARGV[5])
if max_depth > 0 and redis.call('LLEN', KEYS[2]) >= max_depth then
  return -1
end
"""
# Redis does not roll a script back when a command in it fails, so the id is recorded as
# seen last: a failure part-way leaves the event unmarked, and the sender's retry redoes it.
_MARK_SEEN = """
local seen = ARGV[2] .. newest
redis.call('SADD', seen, ARGV[1])
redis.call('EXPIREAT', seen, (newest + 1) * bucket + window)
"""

ENQUEUE_IF_NEW = (
    """
-- KEYS: job hash, queue list, RQ's set of queue keys, the secrets' last use
-- ARGV: job id, seen prefix, window, bucket seconds, max depth, secret fingerprint, then
--       the job's fields as field, value, ...
-- Returns 1 (queued), 0 (seen already) or -1 (queue full, nothing stored).
"""
    + _CLOCK
    + _NOTE_SECRET
    + _SEEN_LOOP
    + _CHECK_ROOM
    + """
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('SADD', KEYS[3], KEYS[2])
redis.call('RPUSH', KEYS[2], ARGV[1])
"""
    + _MARK_SEEN
    + "return 1\n"
)

# The same, with the accepted event archived last (see `capture`); chosen only when
# capture is on, so the plain path carries no extra argument.
ENQUEUE_IF_NEW_AND_CAPTURE = (
    """
-- KEYS: as ENQUEUE_IF_NEW, then the capture stream
-- ARGV: as ENQUEUE_IF_NEW up to the secret fingerprint, then the stream's max length, n,
--       n capture fields and values, then the job's fields as field, value, ...
"""
    + _CLOCK
    + _NOTE_SECRET
    + _SEEN_LOOP
    + _CHECK_ROOM
    + """
local n = tonumber(ARGV[8])
redis.call('HSET', KEYS[1], unpack(ARGV, 9 + n))
redis.call('SADD', KEYS[3], KEYS[2])
redis.call('RPUSH', KEYS[2], ARGV[1])
"""
    + _MARK_SEEN
    + """
-- pcall: an archive that cannot be written never costs the event.
redis.pcall('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', unpack(ARGV, 9, 8 + n))
return 1
"""
)

IS_SEEN = (
    """
-- ARGV: event id, seen prefix, window, bucket seconds
"""
    + _CLOCK
    + _SEEN_LOOP
    + "return 1\n"
)


class QueueFull(Exception):
    """The event's queue already holds `limit` waiting jobs; nothing was stored."""

    def __init__(self, queue: str, limit: int):
        super().__init__(f"the {queue} queue already holds {limit} waiting events")
        self.queue, self.limit = queue, limit


def bucket_seconds(dedupe_window: int) -> int:
    """The span of one bucket of seen ids for a dedupe window."""
    return max(1, math.ceil(dedupe_window / SEEN_BUCKETS))


def seen_prefix(dedupe_window: int) -> str:
    """The key prefix of the buckets for a window: `tw:seen:<bucket seconds>:`, then the
    bucket's number. Buckets of another window never mix with these, so after a change of
    `TW_DEDUPE_WINDOW_SECONDS` the ids are remembered afresh."""
    return f"{SEEN_PREFIX}{bucket_seconds(dedupe_window)}:"


def is_seen(connection: redis.Redis, event_id: str, dedupe_window: int) -> bool:
    """Whether `event_id` was accepted within the last `dedupe_window` seconds."""
    script = connection.register_script(IS_SEEN)
    args = [event_id, seen_prefix(dedupe_window), dedupe_window, bucket_seconds(dedupe_window)]
    return not script(keys=[], args=args)


def secrets_last_verified(connection: redis.Redis) -> dict[str, float]:
    """When each signing secret last verified a delivery: fingerprint -> unix seconds."""
    return {
        fingerprint.decode(): float(stamp)
        for fingerprint, stamp in connection.hgetall(SECRETS_USED_KEY).items()
    }


def open_queues(connection: redis.Redis) -> dict[str, Queue]:
    """The project's RQ queues by name, all with the JSON serializer (never pickle)."""
    return {name: Queue(name, connection=connection, serializer=JSONSerializer) for name in QUEUES}


# Job fields that differ per event; every other field is the same for a queue's jobs.
PER_EVENT_FIELDS = frozenset({"data", "created_at", "enqueued_at", "description"})

# RQ's serialized call of the job function; the one argument, the envelope, goes between.
_CALL_HEAD, _CALL_TAIL = call_framing(JOB_FUNCTION)


def job_data(body: bytes) -> bytes:
    """RQ's serialized call of `handle_event(envelope)`, with `body` (the envelope's JSON,
    UTF-8) as the argument, byte for byte."""
    return _CALL_HEAD + body + _CALL_TAIL


class Intake:
    """Records events as seen and queues them, exactly once per event id."""

    def __init__(self, connection: redis.Redis, settings: Settings):
        self.connection = connection
        self.queues = open_queues(connection)
        self.dedupe_window = settings.dedupe_window_seconds
        self.bucket_seconds = bucket_seconds(settings.dedupe_window_seconds)
        self.seen_prefix = seen_prefix(settings.dedupe_window_seconds)
        self.max_queue_depth = settings.max_queue_depth
        self.job_timeout = settings.job_timeout_seconds
        self.retry = (
            Retry(max=settings.retry_max, interval=settings.retry_intervals)
            if settings.retry_max
            else None
        )
        self._shared_fields = {
            name: queued_job_fields(
                queue, JOB_FUNCTION, self.job_timeout, RESULT_TTL_SECONDS, self.retry,
                leave_out=PER_EVENT_FIELDS,
            )
            for name, queue in self.queues.items()
        }  # fmt: skip
        self._scripts = ScriptRunner(connection)
        self._enqueue_if_new = connection.register_script(ENQUEUE_IF_NEW)
        self.capture_max_events = settings.capture_max_events
        self._enqueue_and_capture = connection.register_script(ENQUEUE_IF_NEW_AND_CAPTURE)
        self.replication = Policy.from_settings(settings)

    def submit(
        self,
        envelope: dict[str, Any],
        body: bytes | None = None,
        capture: list[Any] | None = None,
        secret_fingerprint: str = "",
    ) -> bool:
        """Queue a validated envelope; return False when its id was seen already.

        `body` is the envelope's JSON as received (UTF-8); without it the envelope is
        encoded afresh. `capture` is the archive entry (`capture.entry(...)`), written in
        the same script when capture is on. `secret_fingerprint` names the secret that
        verified the delivery (`signature.fingerprint`), noted as in use now. Raises
        `QueueFull` when the event's queue is at `TW_MAX_QUEUE_DEPTH`, and
        `redis.RedisError` when Redis cannot be reached; nothing of the event is recorded
        then. With `TW_REDIS_ACK_REPLICAS`, raises `replication.NotReplicated` when too few
        replicas confirmed in time: the event may be stored, but only on the primary. A
        duplicate waits as well: the script's note of the secret's use is a write, so the
        WAIT covers the first receipt's write too, whichever connection made it.
        """
        event_id = envelope["id"]
        queue = self.queues[queue_for(envelope["type"])]
        stamp = job_timestamp()
        if body is None:
            body = json.dumps(envelope).encode()
        data = job_data(body)
        per_event = [
            "data", data,
            "created_at", stamp,
            "enqueued_at", stamp,
            "description", f"{envelope['type']} {event_id}",
        ]  # fmt: skip
        keys = [
            queue.job_class.key_for(event_id), queue.key, queue.redis_queues_keys, SECRETS_USED_KEY,
        ]  # fmt: skip
        head = (
            event_id, self.seen_prefix, self.dedupe_window, self.bucket_seconds,
            self.max_queue_depth, secret_fingerprint,
        )  # fmt: skip
        fields = (*self._shared_fields[queue.name], *per_event)
        if capture and self.capture_max_events:
            script, keys = self._enqueue_and_capture, [*keys, CAPTURE_STREAM_KEY]
            args = [*head, self.capture_max_events, len(capture), *capture, *fields]
        else:
            script, args = self._enqueue_if_new, [*head, *fields]
        try:
            if not self.replication.replicas:
                added = self._scripts.run(script, keys, args)
            else:
                started = time.perf_counter()
                added, confirmed = self._scripts.run_and_wait(
                    script, keys, args, self.replication.command
                )
                if added != -1:  # a refusal stored nothing: no replica has anything to hold
                    require(confirmed, self.replication, started)
        except redis.ResponseError as exc:  # not a client of `connect()`: NOREPLICAS as is
            if "NOREPLICAS" not in str(exc):
                raise
            raise NotReplicated(0, self.replication.replicas, None) from exc
        except NoReplicas as exc:  # the primary's min-replicas-to-write
            raise NotReplicated(0, self.replication.replicas, None) from exc
        if added == -1:
            raise QueueFull(queue.name, self.max_queue_depth)
        return bool(added)
