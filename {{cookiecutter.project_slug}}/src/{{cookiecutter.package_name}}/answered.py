"""What the web tier records about each request once it has answered (the delivery
counters, the console's history, the one log line), and when it records it.

Between two deliveries a process runs thousands of other lines, so bookkeeping done per
request runs from cold caches; done for a batch, the same lines cost a fraction (the
template's performance history has the figures). So under gunicorn the request thread
only notes what happened (`Books.note`: one append) and a background thread books the
notes every `INTERVAL` seconds. Counters, history and the log line lag the answer by at
most that; the line keeps the time of the answer, and names the booking thread. What is
noted is booked before the process exits.

An app built with given settings (the tests, an app that embeds the receiver) books each
request as it is answered (`Books(None)`), so what it counted can be read at once.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import weakref
from typing import NamedTuple

from . import logs, metrics, tallies
from .events import queue_for
from .flush_thread import FlushThread

# The line is the web tier's, under the name it has always had.
log = logging.getLogger(f"{__package__}.app")

INTERVAL = 0.1
# Notes waiting past this many are booked by the request thread that adds one more.
CAPACITY = 10_000


class Answered(NamedTuple):
    """One answered request, as noted by the request thread."""

    at: float  # time.time() of the answer
    status: int
    is_delivery: bool  # a POST to the webhook route: counted, and logged at INFO
    outcome: str  # "accepted", "duplicate", or the error code
    event_id: str | None
    event_type: str | None
    request_id: str
    method: str
    path: str
    elapsed: float  # seconds from arrival to answer


def book(answer: Answered) -> None:
    """Count a delivery, tally it for the console and write the request's log line.

    Deliveries are logged at INFO, other requests (health checks) at DEBUG unless they
    failed. Only the request id, the event's id and type, the outcome and the latency
    are logged: never a header, a body or a secret.
    """
    status, outcome = answer.status, answer.outcome
    if answer.is_delivery:
        metrics.RECEIVED.inc()
        metrics.REQUEST_DURATION.observe(answer.elapsed)
        if outcome == "accepted":
            metrics.ENQUEUED_BY_QUEUE[queue_for(answer.event_type)].inc()
            tallies.count(tallies.DELIVERIES, "accepted")
        elif outcome == "duplicate":
            metrics.DUPLICATES.inc()
            tallies.count(tallies.DELIVERIES, "duplicate")
        elif status < 500:
            metrics.REJECTED.labels(outcome).inc()
            tallies.count(tallies.DELIVERIES, "rejected")
        else:
            metrics.ERRORS.labels(outcome).inc()
            tallies.count(tallies.DELIVERIES, "error")
    level = logging.INFO if answer.is_delivery or status >= 400 else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    latency_ms = round(answer.elapsed * 1000, 2)
    path = answer.path if answer.path.isprintable() else repr(answer.path)
    event_id, event_type = answer.event_id, answer.event_type
    record = log.makeRecord(
        log.name,
        level,
        "(unknown file)",
        0,
        "%s %s %d %s%s in %.2f ms (%s)",
        (
            answer.method,
            path,
            status,
            outcome,
            f" {event_type} {event_id}" if event_id else "",
            latency_ms,
            answer.request_id,
        ),
        None,
        extra={
            "requestId": answer.request_id,
            "method": answer.method,
            "path": path,
            "status": status,
            "outcome": outcome,
            "eventId": event_id,
            "eventType": event_type,
            "latencyMs": latency_ms,
        },
    )
    log.handle(logs.dated(record, answer.at))


class Books:
    """Where the request thread notes answered requests: booked every `interval` seconds
    by a background thread, or at once when `interval` is None."""

    def __init__(self, interval: float | None = INTERVAL, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        # deque: append and popleft are atomic, so request threads never wait on a lock.
        self._notes: collections.deque[Answered] = collections.deque()
        self._timer = None if interval is None else FlushThread(self, interval, "tw-books")
        me = weakref.ref(self)
        # A forked child books its own requests; what its parent noted is the parent's.
        os.register_at_fork(after_in_child=lambda: (books := me()) and books._notes.clear())
        atexit.register(lambda: (books := me()) and books.flush())

    def note(self, answer: Answered) -> None:
        if self._timer is None:
            book(answer)
            return
        self._notes.append(answer)
        if len(self._notes) >= self.capacity:
            self.flush()
        else:
            self._timer.start()

    def flush(self) -> int:
        """Book every note waiting; return how many."""
        booked = 0
        while True:
            try:
                answer = self._notes.popleft()
            except IndexError:
                return booked
            try:
                book(answer)
            except Exception:
                log.exception("could not book request %s", answer.request_id)
            booked += 1
