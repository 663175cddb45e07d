"""The handler run in progress: which event, which handler, and by when it must end.

`jobs.handle_event` runs each handler inside `handler_run(...)`; code the handler calls
reads it back with `current_run()`. The API client does (`api/idempotency.py`): its
idempotency keys repeat when the same handler runs again for the same event, and its
calls end before the job's timeout. The context lives here, apart from both, so that the
jobs need not import the API client (and httpx) to say which handler runs, and the client
needs nothing of the jobs to read it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class HandlerRun:
    event_id: str
    handler: str
    deadline: float  # time.monotonic() by which the run must be over
    writes: int = 0  # the API writes made so far (`api/idempotency.py` numbers them)


_current: contextvars.ContextVar[HandlerRun | None] = contextvars.ContextVar(
    "tw_handler_run", default=None
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
    """The handler run this code is part of, or None outside one (a script, a shell)."""
    return _current.get()
