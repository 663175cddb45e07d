"""What this project relies on of RQ beyond its documented API, in one place.

RQ's documented API does most of the work: `Queue`, `Job.fetch`, the registries, and a
worker class with its `queue_class` and `exception_handlers`. Three needs go past it:

- Jobs written and moved by Lua scripts. The intake writes an event's job in the same
  script that dedupes it, one round trip per event (`intake.py`); the lane scripts
  (`lanes.py`), the stranded-job sweep (`worker.py`) and the metrics script (`metrics.py`)
  read or change jobs in Redis too. They must write what RQ reads: the job hash's fields
  (`queued_job_fields`; the scripts name `SCRIPT_JOB_FIELDS` and `SCRIPT_STATUSES`), the
  call as RQ's JSON serializer writes it (`call_data`), RQ's timestamps (`job_timestamp`),
  and the keys of jobs, queues, registries and workers (`*_PREFIX`, `queue_key`).
- Steps RQ takes only inside its own methods: putting a claimed job back at the front of
  its queue in the caller's transaction (`requeue_at_front`), saving a job's meta in a
  pipeline (`save_meta`), fetching a job a queue's dequeue moved (`fetch_dequeued`),
  whether a run is still in the started registry (`is_started`), and a worker forgetting
  a run whose end it could not record (`forget_execution`).
- `worker.Worker` overrides methods of RQ's worker that RQ does not document as extension
  points, relying on their names and parameters (`WORKER_OVERRIDES`).

`tests/test_rq_compat.py` checks each of these against the installed RQ, and the kit runs
it on the lowest and the newest allowed versions: an RQ release that changes any of them
fails there, loudly, instead of losing or misreading events in production.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry, FinishedJobRegistry
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

__all__ = [
    "DEFERRED_REGISTRY_PREFIX",
    "FINISHED_REGISTRY_PREFIX",
    "JOB_KEY_PREFIX",
    "QUEUE_KEY_PREFIX",
    "SCRIPT_JOB_FIELDS",
    "SCRIPT_STATUSES",
    "WORKERS_BY_QUEUE_KEY",
    "WORKER_HEARTBEAT_FIELD",
    "WORKER_OVERRIDES",
    "call_framing",
    "envelope_of",
    "fetch_dequeued",
    "forget_execution",
    "is_started",
    "job_timestamp",
    "queue_key",
    "queued_job_fields",
    "requeue_at_front",
    "save_meta",
]

# Keys. A job's hash is JOB_KEY_PREFIX + id, a queue's list QUEUE_KEY_PREFIX + name, a
# registry's sorted set its prefix + queue name; `WORKERS_BY_QUEUE_KEY % name` is the set
# of the worker keys listening on a queue.
JOB_KEY_PREFIX = Job.redis_job_namespace_prefix
QUEUE_KEY_PREFIX = Queue.redis_queue_namespace_prefix
FINISHED_REGISTRY_PREFIX = FinishedJobRegistry.key_template.format("")
DEFERRED_REGISTRY_PREFIX = DeferredJobRegistry.key_template.format("")

# The job hash's fields the Lua scripts read or write by name, and the statuses they write
# or compare (as RQ stores them).
SCRIPT_JOB_FIELDS = ("status", "origin", "data", "enqueued_at")
SCRIPT_STATUSES = ("queued", "deferred", "finished", "failed", "stopped")
# A worker's hash: when it last reported alive (RQ's timestamp format).
WORKER_HEARTBEAT_FIELD = "last_heartbeat"

# The methods of RQ's worker (and queue) that `worker.py` overrides or calls although RQ
# does not document them as extension points, with the parameters it passes or takes.
WORKER_OVERRIDES = {
    "Queue.dequeue_any": (
        "queues", "timeout", "connection", "job_class", "serializer", "death_penalty_class",
    ),
    "Queue.lmove": ("connection", "queue_key", "timeout"),
    "Worker.validate_queues": (),
    "Worker.prepare_job_execution": ("job", "remove_from_intermediate_queue"),
    "Worker.get_heartbeat_ttl": ("job", "working_time"),
    "Worker.heartbeat": ("timeout", "pipeline"),
    "Worker.check_for_suspension": ("burst",),
    "Worker.dequeue_job_and_maintain_ttl": ("timeout", "max_idle_time"),
    "Worker.run_maintenance_tasks": (),
    "Worker.execute_job": ("job", "queue"),
    "Worker.prepare_execution": ("job",),
    "Worker.perform_job": ("job", "queue", "execution"),
    "Worker.maintain_heartbeats": ("job", "execution"),
    "Worker.handle_job_failure": (
        "job", "queue", "started_job_registry", "exc_string", "execution",
    ),
    "Worker.clean_registries": (),
}  # fmt: skip


def queue_key(name: str) -> str:
    """The key of a queue's list of waiting job ids."""
    return QUEUE_KEY_PREFIX + name


def queued_job_fields(
    queue: Queue,
    func: str,
    timeout: int,
    result_ttl: int,
    retry: Retry | None,
    leave_out: frozenset[str],
) -> tuple[str, ...]:
    """The hash `Queue.enqueue` would write for a queued job of `func` on `queue`, less the
    fields in `leave_out` and the empty placeholders (which RQ reads as unset), as field,
    value, ... strings."""
    job = queue.create_job(func, args=({},), timeout=timeout, result_ttl=result_ttl, retry=retry)
    job.origin = queue.name
    fields = job.to_dict()
    fields["status"] = JobStatus.QUEUED.value  # as `Queue.enqueue` sets it before saving
    flat: list[str] = []
    for name, value in fields.items():
        if value in (None, "") or name in leave_out:
            continue
        if isinstance(value, bytes):
            value = value.decode()
        flat += (name, value if isinstance(value, str) else str(value))
    return tuple(flat)


def call_framing(func: str) -> tuple[bytes, bytes]:
    """What goes before and after the one argument of a call of `func` as RQ's JSON
    serializer writes it (`[function, instance, args, kwargs]`): head + the argument's JSON
    (UTF-8) + tail is the job's `data`, the argument in it byte for byte."""
    return json.dumps([func, None]).encode()[:-1] + b", [", b"], {}]"


def envelope_of(data: bytes) -> Any:
    """The one argument of a job's call, from its hash's `data` field: stored as the intake
    writes it (`call_framing`), or compressed, as RQ saves a job itself."""
    with contextlib.suppress(zlib.error):
        data = zlib.decompress(data)
    return json.loads(data)[2][0]


def job_timestamp(moment: datetime | None = None) -> str:
    """`moment` (an aware UTC datetime; default now) as RQ writes a job's timestamps
    (`rq.utils.utcformat`, `2026-01-31T12:00:00.000000Z`). Through `isoformat` rather than
    RQ's `strftime`, which costs a request several µs (it goes through the C library's
    locale-aware `wcsftime`)."""
    moment = moment or datetime.now(UTC)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"  # less "+00:00"


def fetch_dequeued(
    queue_class: type[Queue],
    connection: redis.Redis,
    queue_key: str,
    job_id: str,
    job_class: type[Job] | None = None,
    serializer: Any = None,
    death_penalty_class: Any = None,
) -> tuple[Job, Queue] | None:
    """The job a dequeue took from `queue_key`, and its queue; None when its hash is gone
    (the caller takes the next). As RQ's own `dequeue_any` does after its pop."""
    job_class = job_class or queue_class.job_class
    queue = queue_class.from_queue_key(
        queue_key,
        connection=connection,
        job_class=job_class,
        serializer=serializer,
        death_penalty_class=death_penalty_class,
    )
    try:
        return job_class.fetch(job_id, connection=connection, serializer=serializer), queue
    except NoSuchJobError:
        return None
    except Exception as exc:
        # RQ's worker reports a job that does not load with these (its failure handling).
        exc.job_id, exc.queue = job_id, queue  # type: ignore[attr-defined]
        raise


def requeue_at_front(queue: Queue, job: Job, pipeline: redis.client.Pipeline) -> None:
    """Queue `job` (no dependencies, no rate limit) again at the front of `queue`, its hash
    saved with the changes made to `job`, within `pipeline` (a transaction under way)."""
    queue.enqueue_job(job, pipeline=pipeline, at_front=True)


def save_meta(pipeline: redis.client.Pipeline, job: Job) -> None:
    """Save `job.meta` alone, as `Job.save_meta` does, in `pipeline`."""
    pipeline.hset(job.key, "meta", job.serializer.dumps(job.meta))


def is_started(connection: redis.Redis, job: Job, execution: Any) -> bool:
    """Whether Redis records `execution` of `job` as running (its started registry)."""
    registry = job.started_job_registry
    return connection.zscore(registry.key, execution.composite_key) is not None


def forget_execution(worker: Any, execution: Any) -> None:
    """Drop a run from `worker`'s own record of what it runs, as RQ's `SimpleWorker` does
    once a job's end is written: its end could not be, and it comes back as abandoned."""
    worker.executions.pop(execution.id, None)
