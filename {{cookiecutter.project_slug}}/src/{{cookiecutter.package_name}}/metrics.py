"""Prometheus metrics: what the receiver and the workers count, and how it is scraped.

The web tier counts every delivery to the webhook route (received, rejected by code,
duplicates, enqueued by queue) with plain counters: one in-memory increment per request,
never a Redis call. Under gunicorn, `gunicorn.conf.py` sets `PROMETHEUS_MULTIPROC_DIR`
before the app is imported, so each worker process writes its counts to a file there and
`GET /metrics` sums the files of every process; without that variable (the dev server,
Flask's test client) the counts of the one process are served as they are.

Queue depth, retries waiting and failed events are read from Redis at scrape time (one
pipelined round trip), so they are the same whichever process answers the scrape.

Handlers run in `worker` processes, which count their runs, durations and failures and
serve them on their own port (`TW_WORKER_METRICS_PORT`, off by default). Several workers
on one host share one setting: each takes the first free port from it upwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Queue

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


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class QueueCollector(Collector):
    """Queue depth, retries waiting and failed events, read from Redis when scraped."""

    def __init__(self, queues: dict[str, Queue]):
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("tw_redis_up", "1 when Redis answered this scrape, else 0.")
        depth = GaugeMetricFamily(
            "tw_queue_depth", "Events waiting in the queue for a worker.", labels=["queue"]
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
        try:
            first = next(iter(self.queues.values()))
            pipe = first.connection.pipeline(transaction=False)
            for queue in self.queues.values():
                pipe.llen(queue.key)
                pipe.zcard(queue.scheduled_job_registry.key)
                pipe.zcard(queue.failed_job_registry.key)
            counts = pipe.execute()
        except redis.RedisError as exc:
            log.warning("metrics: could not read queue sizes from Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for index, name in enumerate(self.queues):
            waiting, retrying, dead = counts[3 * index : 3 * index + 3]
            depth.add_metric([name], waiting)
            scheduled.add_metric([name], retrying)
            failed.add_metric([name], dead)
        yield from (up, depth, scheduled, failed)


def render(queues: dict[str, Queue] | None = None) -> tuple[bytes, str]:
    """The exposition text for `GET /metrics` and its content type."""
    path = multiprocess_dir()
    if path:
        # Read afresh on every scrape: worker processes come and go under gunicorn.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    if queues:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(QueueCollector(queues))
        output += generate_latest(extra)
    return output, CONTENT_TYPE_LATEST


def serve_worker_metrics(port: int, addr: str = "0.0.0.0") -> WSGIServer:
    """Serve this process's metrics from a thread on the first free port from `port`.

    Returns the server (`.server_port` is the port taken, `.shutdown()` stops it).
    """
    last_error: OSError | None = None
    for candidate in range(port, port + WORKER_PORT_RANGE):
        try:
            server, _thread = start_http_server(candidate, addr=addr, registry=REGISTRY)
        except OSError as exc:
            last_error = exc
            continue
        log.info("worker metrics on http://%s:%d/metrics", addr, candidate)
        return server
    raise OSError(
        f"no free port for worker metrics in {port}..{port + WORKER_PORT_RANGE - 1}: {last_error}"
    )
