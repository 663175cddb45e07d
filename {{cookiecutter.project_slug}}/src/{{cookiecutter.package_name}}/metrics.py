"""Prometheus metrics: what the receiver and the workers count, and how it is scraped.

The web tier counts every delivery to the webhook route (received, rejected by code,
duplicates, enqueued by queue, how long the answer took) with plain counters and one
histogram: in-memory work per request, never a Redis call. Under gunicorn,
`gunicorn.conf.py` sets `PROMETHEUS_MULTIPROC_DIR` before the app is imported, so each
worker process writes its counts to a file there; gunicorn's master serves the sum of the
files of every process on a port of its own (`TW_METRICS_PORT`, `serve_receiver_metrics`),
never on the public webhook port, where anyone could read them and every scrape would
cost a Redis round trip.

Queue depth, the oldest waiting event's age, retries waiting, failed events and the
workers alive are read from Redis at scrape time (one script, one round trip), so they are
the same whichever receiver answers the scrape.

Handlers run in `worker` processes, which count their runs, durations and failures and
serve them on their own port (`TW_WORKER_METRICS_PORT`, off by default). Several workers
on one host share one setting: each takes the first free port from it upwards.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import redis
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Queue
from rq.utils import str_to_date

from .config import Settings
from .connection import connect
from .events import QUEUES
from .intake import open_queues
from .lanes import blocked_stats
from .ledger import RANK as ORDER_STATUSES
from .reconcile import TOTALS_KEY, WATERMARK_KEY
from .rq_compat import WORKERS_BY_QUEUE_KEY

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# How many ports above TW_WORKER_METRICS_PORT the workers of one host may take.
WORKER_PORT_RANGE = 16

# The process's own metrics. Not the library's global registry, so embedding the app in
# a bigger one never clashes; in multiprocess mode the files carry the same metrics.
REGISTRY = CollectorRegistry(auto_describe=True)

RECEIVED = Counter(
    "tw_webhooks_received",
    "Deliveries to the webhook route (every POST, whatever the outcome).",
    registry=REGISTRY,
)
REJECTED = Counter(
    "tw_webhooks_rejected",
    "Deliveries answered 4xx, by error code; the sender does not retry these.",
    ["code"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "tw_webhooks_errors",
    "Deliveries answered 5xx, by error code; the sender retries these.",
    ["code"],
    registry=REGISTRY,
)
VERIFIED = Counter(
    "tw_webhooks_verified",
    "Deliveries whose signature a configured secret verified, by that secret's position in "
    "TW_WEBHOOK_SECRETS (from 1) and fingerprint (see the `secrets` command).",
    ["secret", "fingerprint"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "tw_webhooks_duplicate",
    "Deliveries of an event id already seen within the dedupe window (200 duplicate).",
    registry=REGISTRY,
)
ENQUEUED = Counter(
    "tw_webhooks_enqueued",
    "Events stored and queued for the workers (202 accepted), by queue.",
    ["queue"],
    registry=REGISTRY,
)
# Made once per queue: `labels()` per delivery would cost a lock and a lookup. Made at
# import, each queue's series also starts at 0 rather than at its first event.
ENQUEUED_BY_QUEUE = {queue: ENQUEUED.labels(queue) for queue in QUEUES}
REQUEST_DURATION = Histogram(
    "tw_webhook_request_duration_seconds",
    "Time from a delivery's arrival to its answer (the sender's wait), any outcome.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
HANDLER_DURATION = Histogram(
    "tw_handler_duration_seconds",
    "Time one handler took for one event, successful or not.",
    ["handler"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
HANDLER_FAILURES = Counter(
    "tw_handler_failures",
    "Handler runs that raised; each is retried with backoff until TW_RETRY_MAX.",
    ["handler"],
    registry=REGISTRY,
)

# --- Replicas' confirmations (TW_REDIS_ACK_REPLICAS, `replication.py`) -----------------
REPLICA_WAIT = Histogram(
    "tw_redis_replica_wait_seconds",
    "Time from sending a write to the replicas' confirmation (WAIT), by who waited: "
    "intake (the write and WAIT in one round trip) or worker.",
    ["by"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
NOT_REPLICATED = Counter(
    "tw_redis_not_replicated",
    "WAITs that ended with fewer replicas than TW_REDIS_ACK_REPLICAS: deliveries answered "
    "503 not_replicated (by=intake), or a worker's record waiting longer (by=worker).",
    ["by"],
    registry=REGISTRY,
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


# KEYS: per queue, its list, scheduled and failed registries and its set of workers.
# ARGV[1]: the prefix of job keys. Per queue: waiting, retrying, failed, the first waiting
# job's enqueued_at ('' when none) and the last heartbeat of each of its workers.
# A script rather than a pipeline: the first job's key is known only once its id is read.
QUEUE_STATS = """
local stats = {}
for i = 1, #KEYS, 4 do
  local first = redis.call('LINDEX', KEYS[i], 0)
  local enqueued = first and redis.call('HGET', ARGV[1] .. first, 'enqueued_at')
  local beats = {}
  for _, worker in ipairs(redis.call('SMEMBERS', KEYS[i + 3])) do
    beats[#beats + 1] = redis.call('HGET', worker, 'last_heartbeat') or ''
  end
  stats[#stats + 1] = {
    redis.call('LLEN', KEYS[i]), redis.call('ZCARD', KEYS[i + 1]),
    redis.call('ZCARD', KEYS[i + 2]), enqueued or '', beats,
  }
end
return stats
"""


def _age(stamp: bytes, now: float) -> float | None:
    """Seconds since an RQ timestamp, or None for an empty or unreadable one."""
    try:
        return max(0.0, now - str_to_date(stamp).timestamp())
    except ValueError:
        return None


class QueueCollector(Collector):
    """Queue depth and age, retries waiting, failed events and live workers, read from
    Redis when scraped. A worker is alive while its last heartbeat is at most
    `lost_after` seconds old, the age after which its running job is taken as abandoned."""

    def __init__(self, queues: dict[str, Queue], lost_after: int):
        self.queues = queues
        self.lost_after = lost_after
        first = next(iter(queues.values()))
        self.script = first.connection.register_script(QUEUE_STATS)
        self.keys = [
            key
            for queue in queues.values()
            for key in (
                queue.key,
                queue.scheduled_job_registry.key,
                queue.failed_job_registry.key,
                WORKERS_BY_QUEUE_KEY % queue.name,
            )
        ]
        self.job_prefix = first.job_class.redis_job_namespace_prefix

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("tw_redis_up", "1 when Redis answered this scrape, else 0.")
        depth = GaugeMetricFamily(
            "tw_queue_depth", "Events waiting in the queue for a worker.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "tw_queue_oldest_job_age_seconds",
            "How long the first event waiting in the queue has waited (0 when none waits).",
            labels=["queue"],
        )
        scheduled = GaugeMetricFamily(
            "tw_queue_retries_waiting",
            "Events whose handlers failed, waiting for their next retry.",
            labels=["queue"],
        )
        failed = GaugeMetricFamily(
            "tw_queue_failed",
            "Events whose retries are used up (requeue them with `failed retry`).",
            labels=["queue"],
        )
        alive = GaugeMetricFamily(
            "tw_workers_alive",
            "Workers listening on the queue whose heartbeat is fresh.",
            labels=["queue"],
        )
        try:
            stats = self.script(keys=self.keys, args=[self.job_prefix])
        except redis.RedisError as exc:
            log.warning("metrics: could not read queue sizes from Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        now = time.time()
        up.add_metric([], 1)
        for name, (waiting, retrying, dead, enqueued_at, beats) in zip(
            self.queues, stats, strict=True
        ):
            depth.add_metric([name], waiting)
            oldest.add_metric([name], (_age(enqueued_at, now) or 0.0) if waiting else 0.0)
            scheduled.add_metric([name], retrying)
            failed.add_metric([name], dead)
            ages = [_age(beat, now) for beat in beats]
            alive.add_metric(
                [name], sum(age is not None and age <= self.lost_after for age in ages)
            )
        yield from (up, depth, oldest, scheduled, failed, alive)


# --- reconciliation (docs/reconcile.md) -------------------------------------------------


RECONCILED_TYPES = tuple(f"order.{status}" for status in ORDER_STATUSES)


class ReconcileCollector(Collector):
    """The reconciler's totals and its watermark's age, read from Redis when scraped: the
    passes run in whichever worker holds the lock, or in the `reconcile` command."""

    def __init__(self, connection: redis.Redis):
        self.connection = connection

    def collect(self) -> Iterator[Metric]:
        try:
            pipe = self.connection.pipeline(transaction=False)
            raw_totals, mark = pipe.hgetall(TOTALS_KEY).hget(WATERMARK_KEY, "updatedAt").execute()
        except redis.RedisError:
            return  # tw_redis_up says so
        counts = {k.decode(): int(v) for k, v in raw_totals.items()}
        runs = CounterMetricFamily(
            "tw_reconcile_runs", "Reconciliation passes, by outcome.", labels=["outcome"]
        )
        for outcome in ("ok", "error", "baseline"):
            runs.add_metric([outcome], counts.get(f"runs:{outcome}", 0))
        events = CounterMetricFamily(
            "tw_reconcile_events",
            "Synthetic events fed by reconciliation: order changes whose webhook never arrived.",
            labels=["type"],
        )
        found = {name[7:]: value for name, value in counts.items() if name.startswith("events:")}
        for kind, value in {**dict.fromkeys(RECONCILED_TYPES, 0), **found}.items():
            events.add_metric([kind], value)  # from 0, so that an increase is seen
        checked = CounterMetricFamily(
            "tw_reconcile_orders_checked", "Orders compared with the ledger by reconciliation."
        )
        checked.add_metric([], counts.get("checked", 0))
        duplicates = CounterMetricFamily(
            "tw_reconcile_duplicates",
            "Events whose order transition another event (real or synthetic) delivered first; "
            "their handlers did not run.",
        )
        duplicates.add_metric([], counts.get("duplicates", 0))
        yield from (runs, events, checked, duplicates)
        if mark is not None:
            age = GaugeMetricFamily(
                "tw_reconcile_watermark_age_seconds",
                "How far behind now the reconciler's watermark is (every order changed before "
                "it was checked).",
            )
            age.add_metric([], max(0.0, time.time() - float(mark)))
            yield age


# --- lanes (`lanes.py`) ---


class LaneCollector(Collector):
    """Blocked lanes (their first event failed every retry) and how long the oldest has
    been blocked, read from Redis when scraped (one pipelined round trip)."""

    def __init__(self, connection: redis.Redis):
        self.connection = connection

    def collect(self) -> Iterator[Metric]:
        try:
            count, age = blocked_stats(self.connection)
        except redis.RedisError:
            return  # `tw_redis_up` says so
        blocked = GaugeMetricFamily("tw_lanes_blocked", "Lanes blocked by a failed event.")
        blocked.add_metric([], count)
        oldest = GaugeMetricFamily(
            "tw_lanes_oldest_blocked_age_seconds",
            "How long the longest-blocked lane has been blocked (0 when none is).",
        )
        oldest.add_metric([], age)
        yield from (blocked, oldest)


def receiver_registry(queues: dict[str, Queue], lost_after: int) -> CollectorRegistry:
    """What a scrape of the receiver returns: the counts of every web process (or of this
    one, without `PROMETHEUS_MULTIPROC_DIR`) and the queue gauges read from Redis."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        # Reads the files afresh on every scrape: gunicorn's workers come and go.
        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry.register(REGISTRY)
    registry.register(QueueCollector(queues, lost_after))
    registry.register(ReconcileCollector(next(iter(queues.values())).connection))
    registry.register(LaneCollector(next(iter(queues.values())).connection))
    return registry


def serve_receiver_metrics(settings: Settings) -> WSGIServer | None:
    """Serve the receiver's metrics from a thread of this process (gunicorn's master) on
    `TW_METRICS_ADDR:TW_METRICS_PORT`; None when the port is 0 (off).

    Raises OSError when the port cannot be bound.
    """
    if not settings.metrics_port:
        return None
    registry = receiver_registry(open_queues(connect(settings)), settings.worker_lost_after_seconds)
    server, _thread = start_http_server(
        settings.metrics_port, addr=settings.metrics_addr, registry=registry
    )
    log.info("receiver metrics on http://%s:%d/metrics", settings.metrics_addr, server.server_port)
    return server


def serve_worker_metrics(port: int, addr: str = "0.0.0.0") -> WSGIServer:
    """Serve this process's metrics from a thread on the first free port from `port`, on
    `addr` (the worker passes `TW_METRICS_ADDR`, as the receiver does).

    Returns the server (`.server_port` is the port taken, `.shutdown()` stops it).
    """
    last_error: OSError | None = None
    for candidate in range(port, port + WORKER_PORT_RANGE):
        try:
            server, _thread = start_http_server(candidate, addr=addr, registry=REGISTRY)
        except OSError as exc:
            last_error = exc
            continue
        log.info("worker metrics on http://%s:%d/metrics (pid %d)", addr, candidate, os.getpid())
        return server
    raise OSError(
        f"no free port for worker metrics in {port}..{port + WORKER_PORT_RANGE - 1}: {last_error}"
    )
