"""Idempotency keys that survive a re-run of the handler that made the call.

The worker runs each handler inside `handler_run(event_id, handler_name, deadline)`
(`handler_context.py`, which the jobs set and this module reads). Every
write (POST, PUT) the handler makes then takes the next key of that run, derived from the
event id, the handler's name and the write's position in the run (first, second...). When
the handler runs again for the same event (a retry after a failure, a worker killed
mid-handler, `failed retry`), its writes get the same keys in the same order, so the API
answers them with the results it stored the first time and the effects happen once. Reads
are not counted: a handler whose reads vary between runs still numbers its writes alike.

Outside a handler (a script, a shell) each write gets a random key, kept across that
call's own retries. The deadline travels the same way: a call made by a handler never
outlives the job's timeout.
"""

from __future__ import annotations

import hashlib
import time
import uuid

from ..handler_context import current_run, handler_run

__all__ = ["JOB_END_MARGIN_SECONDS", "current_run", "deadline", "handler_run", "next_key"]

# A handler's call gives up this long before the job's end, leaving the handler time to
# see the error before RQ stops the job.
JOB_END_MARGIN_SECONDS = 1.0


def next_key(method: str, path: str) -> str:
    """The key for the next write: stable within a handler run, random outside one."""
    run = current_run()
    if run is None:
        return uuid.uuid4().hex
    run.writes += 1
    # The method and path are in the key too: a re-run that writes elsewhere at the same
    # position gets a fresh key instead of an idempotency error.
    material = f"{run.event_id}\n{run.handler}\n{run.writes}\n{method.upper()} {path}"
    return hashlib.sha256(material.encode()).hexdigest()


def deadline(default_seconds: float) -> float:
    """The monotonic time a call must end by: shortly before the handler run's job ends, or
    `default_seconds` on."""
    run = current_run()
    fallback = time.monotonic() + default_seconds
    return fallback if run is None else min(run.deadline - JOB_END_MARGIN_SECONDS, fallback)
