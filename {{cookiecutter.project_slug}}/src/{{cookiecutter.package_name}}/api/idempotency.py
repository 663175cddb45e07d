"""Idempotency keys that survive a re-run of the handler that made the call.

The worker runs each handler inside `handler_run(event_id, handler_name, deadline)`. Every
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

import contextlib
import contextvars
import hashlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

# A handler's call gives up this long before the job's end, leaving the handler time to
# see the error before RQ stops the job.
JOB_END_MARGIN_SECONDS = 1.0


@dataclass
class HandlerRun:
    event_id: str
    handler: str
    deadline: float  # time.monotonic() by which the run must be over
    writes: int = 0


_current: contextvars.ContextVar[HandlerRun | None] = contextvars.ContextVar(
    "tw_api_handler_run", default=None
)


@contextlib.contextmanager
def handler_run(event_id: str, handler: str, deadline: float) -> Iterator[HandlerRun]:
    """Mark the code inside as one run of `handler` for `event_id`."""
    run = HandlerRun(event_id, handler, deadline)
    token = _current.set(run)
    try:
        yield run
    finally:
        _current.reset(token)


def current_run() -> HandlerRun | None:
    return _current.get()


def next_key(method: str, path: str) -> str:
    """The key for the next write: stable within a handler run, random outside one."""
    run = _current.get()
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
    run = _current.get()
    fallback = time.monotonic() + default_seconds
    return fallback if run is None else min(run.deadline - JOB_END_MARGIN_SECONDS, fallback)
