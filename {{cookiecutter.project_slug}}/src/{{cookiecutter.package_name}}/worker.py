"""The `worker` command: RQ workers on the project's queues.

It runs RQ's `SimpleWorker`, which performs jobs in its own process instead of forking a
child per job. RQ's default `Worker` forks for isolation, and pays for it with roughly ten
milliseconds per job; the handlers here are the project's own short functions, so the
isolation buys little and the fork costs most of the throughput (`docs/performance.md` has the
figures). Run several worker processes to use several cores, or to wait on several API
calls at once: `worker --processes N` runs N of them under one command (`supervisor.py`).

A worker can die in the middle of a job (kill -9, out of memory, a lost machine). RQ finds
such a job only when its entry in the started registry expires, and a `SimpleWorker` does
not renew that entry while a job runs, so RQ has to give every job its whole timeout plus
a minute before it may call it abandoned. `Worker` below renews the entry every few
seconds from a small thread while the job runs, so the entry can be short
(`TW_WORKER_LOST_AFTER_SECONDS`, 20 s) without a long handler ever looking dead; and its
maintenance puts an abandoned job straight back at the front of its queue, keeping the
handlers it had finished (`jobs.py`), instead of spending one of the job's handler
retries and waiting out the retry backoff.

RQ takes a job from several queues with `BLPOP`, after which, until the job's start is
written, the job exists only in the worker's memory: a worker killed, or a Redis that
dies, in that millisecond would lose it. `MovingQueue` takes every job by an atomic move
into RQ's intermediate list of its queue instead (what RQ itself does for a worker with a
single queue), and maintenance puts a job stranded there back on its queue.

RQ's own loop quits on the first Redis error outside its blocking pop. `Worker` rides out
a Redis outage instead: a job whose ending could not be written stays "started" and comes
back as abandoned, and the worker waits for Redis, backing off, and goes on.

What RQ documents as extension points is used as such (`queue_class`, `exception_handlers`);
the methods of RQ's worker overridden here beyond those, and the RQ internals used, are
listed in `rq_compat.py`, whose contract tests fail when an RQ release changes them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback

import redis
from rq import Queue, SimpleWorker
from rq.exceptions import AbandonedJobError, DequeueTimeout
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import as_text, current_timestamp, now
from rq.worker import WorkerStatus

from . import replication, rq_compat, tallies
from .config import ConfigError, Settings
from .connection import connect
from .events import QUEUES
from .intake import JOB_FUNCTION, open_queues
from .jobs import (
    DONE_META_KEY,
    LAST_ERROR_META_KEY,
    REMEMBER_PATIENCE_SECONDS,
    HandlerFailed,
)
from .lanes import PARKED, Lanes, Ticket
from .routing import routes

log = logging.getLogger(__name__)

ABANDONED_META_KEY = "abandoned"
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
# A job abandoned this often is likely what kills its workers (a "poison" event). It is
# then left to RQ, which spends one handler retry per further crash and finally moves it
# to the failed registry, where it waits for `failed retry` instead of killing workers.
MAX_REQUEUES = 3
# An idle worker on several queues blocks on the first one for at most this long before it
# looks at the others again; a busy one never waits.
BLOCK_SLICE_SECONDS = 1

# KEYS: intermediate list, queue list, job hash. ARGV: job id.
# Whoever removes the id from the intermediate list puts it back on the queue; anyone else,
# or a worker that started the job meanwhile (starting removes it), finds nothing to move,
# so a stranded job is requeued exactly once. An id whose job is gone is just dropped.
REQUEUE_STRANDED = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 or redis.call('EXISTS', KEYS[3]) == 0 then
  return 0
end
redis.call('HSET', KEYS[3], 'status', 'queued')
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"""


class MovingQueue(Queue):
    """A queue whose jobs are taken by moving them into RQ's intermediate list.

    Non-blocking `LMOVE` from each queue in priority order, then a blocking `BLMOVE` on the
    first (for `BLOCK_SLICE_SECONDS` when there are others to look at again). Each move is
    atomic, so a job is always in Redis: in its queue, its intermediate list, or the
    started registry.
    """

    @classmethod
    def dequeue_any(
        cls,
        queues,
        timeout,
        connection,
        job_class=None,
        serializer=None,
        death_penalty_class=None,
    ):
        keys = [queue.key for queue in queues]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = next(filter(None, (cls.lmove(connection, key, None) for key in keys)), None)
            if result is None:
                if deadline is None:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DequeueTimeout(timeout, keys)
                block = remaining if len(keys) == 1 else min(remaining, BLOCK_SLICE_SECONDS)
                try:
                    result = cls.lmove(connection, keys[0], max(1, round(block)))
                except DequeueTimeout:
                    continue
            queue_key, job_id = map(as_text, result)
            fetched = rq_compat.fetch_dequeued(
                cls,
                connection,
                queue_key,
                job_id,
                job_class=job_class,
                serializer=serializer,
                death_penalty_class=death_penalty_class,
            )
            if fetched is not None:
                return fetched


class Worker(SimpleWorker):
    """A `SimpleWorker` whose running job stays visibly alive and whose dead jobs return fast.

    `lost_after` seconds without a heartbeat mark a job as abandoned. The heartbeat goes out
    every quarter of that; maintenance (looking for abandoned jobs) runs every half, and an
    idle worker wakes from its blocking pop every quarter to run it. A job whose worker
    died is therefore back in its queue at most about 1.75 x `lost_after` after the crash
    (35 s by default), when another worker is running.
    """

    def __init__(self, *args, lost_after: int = 20, lane_on_failure: str = "block", **kwargs):
        self.lost_after = max(2, lost_after)
        # Ours first: a handler passed in may end the chain (by returning False).
        theirs = kwargs.pop("exception_handlers", None) or []
        theirs = list(theirs) if isinstance(theirs, list | tuple) else [theirs]
        kwargs["exception_handlers"] = [not_retried_if_configuration, keep_last_error, *theirs]
        kwargs.setdefault("maintenance_interval", max(1, self.lost_after // 2))
        # RQ blocks on the queues for worker_ttl - 15 s at a time; maintenance waits for it.
        kwargs.setdefault("worker_ttl", 15 + max(1, self.lost_after // 4))
        super().__init__(*args, **kwargs)
        # The running (job, execution), read by one long-lived heartbeat thread: starting a
        # thread per job would cost more than a no-op job itself.
        self._running: tuple[Job, object, Ticket | None] | None = None
        # Per queue: job id -> when this worker first saw it stranded (see requeue_stranded).
        self._stranded: dict[str, dict[str, float]] = {}
        self._running_lock = threading.Lock()
        self._heart: threading.Thread | None = None
        # Lanes (`lanes.py`): a job without a lane handler costs them no Redis call.
        self.lanes = Lanes(self.connection, self.lost_after, lane_on_failure)
        # The primary's replication id when last looked, and when it last changed.
        self._primary: tuple[str | None, float] = (None, float("-inf"))

    queue_class = MovingQueue

    def validate_queues(self) -> None:
        # Any RQ queue will do: `MovingQueue.dequeue_any` needs only their keys.
        for queue in self.queues:
            if not isinstance(queue, Queue):
                raise TypeError(f"{queue!r} is not an RQ queue")

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False):
        # Every job came through its queue's intermediate list (`MovingQueue`), however many
        # queues this worker has; RQ takes it off that list when it records the start.
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.lost_after

    def heartbeat(self, *args, **kwargs) -> None:
        try:
            super().heartbeat(*args, **kwargs)
        except REDIS_DOWN as exc:
            log.warning("worker heartbeat failed: %s", exc)  # the next pop waits for Redis

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except REDIS_DOWN as exc:
            log.warning("cannot check for suspension: %s", exc)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        wait = 1.0
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except REDIS_DOWN as exc:
                log.warning("Redis is unreachable (%s); trying again in %.0f s", exc, wait)
                time.sleep(wait)
                wait = min(wait * 2, 30.0)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except REDIS_DOWN as exc:
            log.warning("maintenance skipped, Redis is unreachable: %s", exc)

    def execute_job(self, job: Job, queue: Queue) -> None:
        if not _is_ours(job):
            # RQ would import and call whatever function a job names; only ours may run,
            # so write access to Redis never becomes running code of someone's choosing.
            log.error("job %s does not call %s; refused, moved to failed", job.id, JOB_FUNCTION)
            self.connection.lrem(queue.intermediate_queue_key, 1, job.id)
            job.retries_left = None
            self.handle_job_failure(job, queue, exc_string=f"refused: not {JOB_FUNCTION}")
            return
        ticket = self._enter_lanes(job, queue)
        if ticket is not None and ticket.whole_job_parked:
            return  # nothing to run before its turn in a lane; the lane will requeue it
        # The job has left its queue; until it is recorded as started, this process is the
        # only place it exists, so wait for Redis rather than drop it.
        while True:
            try:
                execution = self.prepare_execution(job)
                break
            except REDIS_DOWN as exc:
                log.warning("job %s: cannot record its start yet (%s); retrying", job.id, exc)
                time.sleep(1)
        # With TW_REDIS_ACK_REPLICAS: no handler runs before the replicas hold the job's
        # start (and so the end of the job before), for a new primary to know it runs. A
        # lane it joined is freed when its lease runs out, as for a lost worker.
        if not replication.barrier(self.connection) and not _still_started(job, execution):
            log.warning(
                "job %s: its start was lost in a Redis failover; left to the new primary",
                job.id,
            )
            rq_compat.forget_execution(self, execution)
            return
        self._set_running((job, execution, ticket))
        parked = PARKED.set(ticket.parked_handlers if ticket is not None else frozenset())
        try:
            self.perform_job(job, queue, execution)
            # The job's end and its handlers' marks, before the next job or the next event
            # of its lanes starts.
            replication.barrier(self.connection)
            if ticket is not None:
                # No renewal of the lanes from here on: once released, they are not ours.
                self._set_running((job, execution, None))
                self._leave_lanes(job, ticket)
            self.set_state(WorkerStatus.IDLE)
        except REDIS_DOWN as exc:
            log.error(
                "job %s: Redis went away before its end was recorded (%s); "
                "it will be requeued as abandoned",
                job.id, exc,
            )  # fmt: skip
            rq_compat.forget_execution(self, execution)
        finally:
            PARKED.reset(parked)
            self._set_running(None)

    def _enter_lanes(self, job: Job, queue: Queue) -> Ticket | None:
        """Join the job's lanes before it leaves the intermediate list (`lanes.py`)."""
        while True:
            try:
                ticket = self.lanes.enter(job, queue, job.meta.get(DONE_META_KEY, ()))
                if ticket is None or not ticket.held_ms:
                    return ticket
                time.sleep(min(ticket.held_ms / 1000, 0.05))
                job.get_meta(refresh=True)  # the other run may have finished a handler
            except REDIS_DOWN as exc:
                log.warning("job %s: cannot join its lanes yet (%s); retrying", job.id, exc)
                time.sleep(1)

    def _leave_lanes(self, job: Job, ticket: Ticket) -> None:
        """Release or keep the job's lanes after its run; a short Redis outage is waited
        out (giving up leaves the lease to expire and the job to run again)."""
        deadline = time.monotonic() + REMEMBER_PATIENCE_SECONDS
        while True:
            try:
                self.lanes.leave(job, ticket, job.meta.get(DONE_META_KEY, ()))
                return
            except REDIS_DOWN:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def _set_running(self, running: tuple[Job, object, Ticket | None] | None) -> None:
        """Hand the heartbeat thread its job; once this returns with None, no heartbeat
        for the previous job is in flight (the thread beats while holding the lock)."""
        with self._running_lock:
            self._running = running
        if self._heart is None:
            self._heart = threading.Thread(target=self._keep_alive, daemon=True)
            self._heart.start()

    def _keep_alive(self) -> None:
        while True:
            time.sleep(self.lost_after / 4)
            with self._running_lock:
                if self._running is None:
                    continue
                job, execution, ticket = self._running
                try:
                    self.maintain_heartbeats(job, execution)
                    lost = self.lanes.renew(job, ticket) if ticket is not None else []
                except redis.RedisError as exc:
                    log.warning("job %s: heartbeat failed: %s", job.id, exc)
                    continue
                if lost:
                    # Declared lost (this process was frozen past the lease) and the lane
                    # handed on: running on beside its new holder would break the lane.
                    log.critical("job %s lost lane(s) %s; stopping this worker", job.id, lost)
                    os._exit(70)

    def clean_registries(self) -> None:
        if self._after_failover():
            self.last_cleaned_at = now()  # RQ's own cleanup would take the same jobs
            return
        for queue in self.queues:
            try:
                requeue_abandoned(queue)
                sightings = self._stranded.setdefault(queue.name, {})
                requeue_stranded(queue, sightings, older_than=self.lost_after)
            except redis.RedisError as exc:
                log.warning("queue %s: could not look for abandoned jobs: %s", queue.name, exc)
        super().clean_registries()

    def _after_failover(self) -> bool:
        """Whether Redis' primary changed less than `lost_after` seconds ago (a failover).

        A promoted replica holds the running jobs' heartbeats as they were when it stopped
        hearing from the old primary: a job whose worker is alive, waiting to reconnect,
        looks abandoned there. Requeuing it would run its unfinished handler twice, so no
        job counts as abandoned until the live workers' heartbeats have had `lost_after`
        seconds to reach the new primary."""
        try:
            replid = self.connection.info("replication").get("master_replid")
        except redis.ResponseError:  # a managed Redis that keeps INFO to itself
            return False
        known, changed = self._primary
        if known is not None and replid != known:
            changed = time.monotonic()
            log.warning(
                "Redis has a new primary (failover); abandoned jobs wait %d s", self.lost_after
            )
        self._primary = (replid, changed)
        return time.monotonic() - changed < self.lost_after


def _still_started(job: Job, execution) -> bool:
    """Whether Redis (a new primary, after a failover) still records `execution` of `job`
    as running: otherwise the job is back in its queue or intermediate list there, where
    a worker (or the stranded-job sweep) takes it up, and this one must not run it."""
    while True:
        try:
            return rq_compat.is_started(job.connection, job, execution)
        except REDIS_DOWN as exc:
            log.warning("job %s: cannot look up its start yet (%s); retrying", job.id, exc)
            time.sleep(1)


def not_retried_if_configuration(job: Job, exc_type, exc: BaseException | None, tb) -> None:
    """An RQ exception handler (run before RQ decides on a retry): a missing or invalid
    setting is not transient, and retrying for minutes would not fix it. The job fails now,
    with the message; `failed retry` runs it after the fix."""
    if _configuration_error(exc):
        job.retries_left = None
        log.error("job %s: a configuration error, not retried: %s", job.id, exc)


def keep_last_error(job: Job, exc_type, exc: BaseException | None, tb) -> None:
    """An RQ exception handler: a job that will be retried keeps the error of this run in
    its meta (RQ records an error only once the retries are used up), saved with the job by
    RQ's retry in the same pipeline, at no extra round trip. Not for a job RQ's cleanup
    found abandoned (`requeue_abandoned` gave up on it): no run of it ended with an error."""
    if job.should_retry and exc_type is not AbandonedJobError:
        job.meta[LAST_ERROR_META_KEY] = "".join(traceback.format_exception(exc_type, exc, tb))


def _configuration_error(exc: BaseException | None) -> bool:
    """True if every handler that failed raised `ConfigError` (a handler that failed for
    another reason keeps its retries, and the event with it)."""
    if isinstance(exc, HandlerFailed):
        return all(isinstance(failure, ConfigError) for failure in exc.failures.values())
    return isinstance(exc, ConfigError)


def _is_ours(job: Job) -> bool:
    try:
        return job.func_name == JOB_FUNCTION
    except Exception:  # data that does not even decode
        return False


def requeue_abandoned(queue: Queue, max_requeues: int = MAX_REQUEUES) -> list[str]:
    """Put the jobs of `queue` whose worker went silent back at its front; return their ids.

    Safe with many workers at once: a job is claimed by removing its expired entry from the
    started registry in the same transaction that queues it, so exactly one worker requeues
    it, and a worker that dies half-way leaves it where the next one finds it.
    """
    registry = queue.started_job_registry
    requeued = []
    for entry in queue.connection.zrangebyscore(registry.key, 0, current_timestamp()):
        job = queue.fetch_job(registry.parse_job_id(entry))
        if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
            continue  # a leftover entry, which RQ's own cleanup removes
        times = int(job.meta.get(ABANDONED_META_KEY, 0))
        if times >= max_requeues:
            continue  # RQ's cleanup: a handler retry, or the failed registry
        job.meta[ABANDONED_META_KEY] = times + 1
        job.started_at = job.ended_at = None
        if _claim_and_requeue(queue, registry.key, entry, job):
            log.warning(
                "job %s was abandoned by its worker; requeued (%d of %d)",
                job.id, times + 1, max_requeues,
            )  # fmt: skip
            requeued.append(job.id)
    return requeued


def requeue_stranded(queue: Queue, sightings: dict[str, float], older_than: float) -> list[str]:
    """Put back the jobs of `queue` taken by a worker that never recorded their start.

    Such a job sits in the queue's intermediate list and not in its started registry. A
    live worker starts a job within milliseconds of taking it, so a job counts as stranded
    only when this sweep has seen it there, unstarted, at every sweep for `older_than`
    seconds. `sightings` (id -> first seen, kept by the caller between sweeps) is updated
    in place; an id that left the list is forgotten, so an old sighting never condemns a
    job that came back later.
    """
    started = set(queue.started_job_registry.get_job_ids(cleanup=False))
    script = queue.connection.register_script(REQUEUE_STRANDED)
    intermediate_key = queue.intermediate_queue_key
    at = time.monotonic()
    still: dict[str, float] = {}
    requeued = []
    for job_id in queue.intermediate_queue.get_job_ids():
        if job_id in started:
            continue
        first_seen = sightings.get(job_id, at)
        if at - first_seen < older_than:
            still[job_id] = first_seen
        elif script(keys=[intermediate_key, queue.key, Job.key_for(job_id)], args=[job_id]):
            log.warning("job %s was taken but never started; requeued", job_id)
            requeued.append(job_id)
    sightings.clear()
    sightings.update(still)
    return requeued


def _claim_and_requeue(queue: Queue, registry_key: str, entry: bytes, job: Job) -> bool:
    for _ in range(3):
        with queue.connection.pipeline() as pipe:
            try:
                pipe.watch(registry_key)
                score = pipe.zscore(registry_key, entry)
                if score is None or score > current_timestamp():
                    return False  # another worker took it, or its worker came back
                pipe.multi()
                pipe.zrem(registry_key, entry)
                rq_compat.requeue_at_front(queue, job, pipe)
                pipe.execute()
                return True
            except redis.WatchError:
                continue  # a heartbeat touched the registry meanwhile; look again
    return False


def build_worker(
    settings: Settings,
    queue_names: list[str] | None = None,
    connection: redis.Redis | None = None,
) -> Worker:
    """A worker for `queue_names` (default: all, orders first), handlers loaded."""
    try:
        routes.load(settings.handler_modules)
    except ModuleNotFoundError as exc:
        named = [m for m in settings.handler_modules if f"{m}.".startswith(f"{exc.name}.")]
        if not named:
            raise  # a handler module imports something missing: its traceback says what
        raise ConfigError(
            f"TW_HANDLER_MODULES names {named[0]!r}, but there is no module {exc.name!r}: "
            "is it installed, or on PYTHONPATH?"
        ) from None
    if connection is None:
        connection = connect(settings)
    tallies.TALLY.bind(connection)
    replication.configure(settings)
    queues = open_queues(connection)
    names = queue_names or list(QUEUES)
    unknown = sorted(set(names) - set(queues))
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; choose from {', '.join(QUEUES)}")
    return Worker(
        names,  # the worker opens them as `MovingQueue`s, with its JSON serializer
        connection=connection,
        serializer=JSONSerializer,
        lost_after=settings.worker_lost_after_seconds,
        lane_on_failure=settings.lane_on_failure,
    )


def run(settings: Settings, queue_names: list[str] | None = None, burst: bool = False) -> None:
    worker = build_worker(settings, queue_names)
    names = ", ".join(queue.name for queue in worker.queues)
    log.info("worker %s listening on %s (pid %d)", worker.name, names, os.getpid())
    if settings.worker_metrics_port:
        from .metrics import serve_worker_metrics

        serve_worker_metrics(settings.worker_metrics_port, settings.metrics_addr)
    if settings.reconcile_interval_seconds and not burst:
        from .reconcile import start_periodic

        start_periodic(settings)  # one pass per interval across every worker
    # RQ narrates every job at INFO; the handlers' own lines say what matters.
    rq_level = "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
    worker.work(burst=burst, with_scheduler=True, logging_level=rq_level)
