"""The RQ job: one event in, every matching handler run once to success.

Each handler that succeeds is written down in the job's `meta` straight away. When another
handler fails, the job raises, RQ schedules a retry with exponential backoff, and on that
retry the handlers already written down are skipped: a flaky e-mail handler does not make
the order-booking handler run twice. When the retries are used up the job lands in RQ's
failed registry, from where `failed retry` puts it back, with the same memory.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

import redis
from rq import get_current_job

from . import lanes, ledger, metrics, replication, rq_compat, tallies
from .config import Settings, settings_from_env
from .events import Event
from .handler_context import handler_run
from .routing import routes

log = logging.getLogger(__name__)

DONE_META_KEY = "handlers_done"
# The handlers that raised in the latest run, for `failed retry --handler`; dropped once
# they succeed.
FAILED_META_KEY = "handlers_failed"
# The error of the failed run that left the job waiting for a retry (RQ records an error
# only once the retries are used up), kept by the worker for `events show`.
LAST_ERROR_META_KEY = "last_error"
# The handlers' tracebacks of the last few failed runs, for the console: RQ keeps only the
# final error of a round of retries, and only the job's own (`HandlerFailed`).
ERRORS_META_KEY = "errors"
KEPT_ERRORS = 10
# The event that delivered this one's order transition before it (see `ledger`).
DUPLICATE_OF_META_KEY = "duplicate_of"
# How long to keep trying to write down a handler that succeeded while Redis is away;
# giving up would make the retry run that handler a second time.
REMEMBER_PATIENCE_SECONDS = 30


class HandlerFailed(Exception):
    """One or more handlers raised; the job will be retried for those alone."""

    def __init__(self, event: Event, failures: dict[str, BaseException]):
        self.failures = failures
        names = ", ".join(f"{name}: {exc!r}" for name, exc in failures.items())
        super().__init__(f"{event.type} {event.id}: {len(failures)} handler(s) failed: {names}")


def ensure_handlers_loaded() -> None:
    """Import the handler modules if this process has not yet (e.g. under plain `rq worker`)."""
    if not routes.loaded:
        routes.load(settings_from_env().handler_modules)


def _record_run(event: Event, name: str, started: float, exc: Exception | None = None) -> None:
    """Time one handler run in the metrics and write its one log line (with the traceback
    when it failed)."""
    elapsed = time.perf_counter() - started
    metrics.HANDLER_DURATION.labels(name).observe(elapsed)
    if exc is not None:
        metrics.HANDLER_FAILURES.labels(name).inc()
    tallies.count(tallies.HANDLERS, f"{'failed' if exc is not None else 'ok'}:{name}")
    level = logging.ERROR if exc is not None else logging.INFO
    if not log.isEnabledFor(level):
        return
    outcome = "failed" if exc is not None else "ok"
    log.log(
        level,
        "%s %s: handler %s %s in %.1f ms",
        event.type, event.id, name, outcome, elapsed * 1000,
        exc_info=exc,
        extra={
            "eventId": event.id,
            "eventType": event.type,
            "handler": name,
            "outcome": outcome,
            "durationMs": round(elapsed * 1000, 2),
        },
    )  # fmt: skip


def handle_event(envelope: dict[str, Any]) -> list[str]:
    """Run the handlers for one event; return the names of those that ran this time."""
    ensure_handlers_loaded()
    event = Event.from_dict(envelope)
    job = get_current_job()
    done = set(job.meta.get(DONE_META_KEY, ())) if job is not None else set()
    if job is not None and (first := ledger.record(job.connection, event)):
        log.info(
            "%s %s: duplicate of %s, which delivered this order transition; no handler runs",
            event.type, event.id, first,
        )  # fmt: skip
        job.meta[DUPLICATE_OF_META_KEY] = first
        _save_meta(job)
        return []
    handlers = routes.handlers_for(event.type)
    if not handlers:
        log.info("%s %s: no handler registered; acknowledged and dropped", event.type, event.id)
        return []
    # The API client's calls end before RQ would stop the job (`api/idempotency.py`).
    timeout = job.timeout if job is not None and job.timeout else Settings.job_timeout_seconds
    deadline = time.monotonic() + timeout
    ran: list[str] = []
    failures: dict[str, BaseException] = {}
    if job is not None:
        # Saved with the next handler that succeeds, or below with this run's failures.
        job.meta.pop(FAILED_META_KEY, None)
    # Lane handlers whose turn has not come wait for a later run (`lanes.py`).
    waiting = lanes.PARKED.get()
    for handler in handlers:
        if handler.name in done or handler.name in waiting:
            continue
        started = time.perf_counter()
        try:
            with handler_run(event.id, handler.name, deadline):
                handler.func(event)
        except Exception as exc:
            failures[handler.name] = exc
            _record_run(event, handler.name, started, exc)
            continue
        _record_run(event, handler.name, started)
        ran.append(handler.name)
        done.add(handler.name)
        if job is not None:
            job.meta[DONE_META_KEY] = sorted(done)
            _save_meta(job, replicated=True)
    if failures:
        if job is not None:
            job.meta[FAILED_META_KEY] = sorted(failures)
            _remember_failures(job, failures)  # saves the meta
        raise HandlerFailed(event, failures)
    return ran


def _remember_failures(job, failures: dict[str, BaseException]) -> None:
    """Keep this run's handler tracebacks in the job's meta (the last `KEPT_ERRORS` runs).
    One write, on failed runs only."""
    text = "\n".join(
        f"{name}:\n{''.join(traceback.format_exception(exc)).rstrip()}"
        for name, exc in failures.items()
    )
    runs = [*job.meta.get(ERRORS_META_KEY, ()), {"at": time.time(), "error": text}]
    job.meta[ERRORS_META_KEY] = runs[-KEPT_ERRORS:]
    _save_meta(job)


def _save_meta(job, replicated: bool = False) -> None:
    """Save the job's meta, waiting out a short Redis outage rather than losing the record.

    `replicated`: a handler's success mark, which the next handler or job waits for until
    `TW_REDIS_ACK_REPLICAS` replicas hold it (`replication.persist`), so that a failover
    cannot make a finished handler run again."""
    if replicated and replication.POLICY.replicas:
        replication.persist(job.connection, lambda pipe: rq_compat.save_meta(pipe, job))
        return
    deadline = time.monotonic() + REMEMBER_PATIENCE_SECONDS
    while True:
        try:
            job.save_meta()
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("job %s: cannot record a finished handler yet (%s); retrying", job.id, exc)
            time.sleep(1)
