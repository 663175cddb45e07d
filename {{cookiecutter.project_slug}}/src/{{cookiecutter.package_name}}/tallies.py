"""The last two hours of outcomes, per minute, in Redis: what the console's charts draw.

Prometheus counters live in each process and need a Prometheus server to become a
history; the console wants the last hour of every process from Redis alone. So each
process also tallies its outcomes in memory (`count`: a dict increment under a lock, never
a Redis call on the request path), and a background thread adds the tallies every few
seconds to one Redis hash per series and minute, `tw:history:<series>:<unix minute>`
(field = outcome, `HINCRBY`), which expires two hours after its last write. That is one
pipelined round trip per process every `FLUSH_SECONDS`, whatever the traffic.

Series: `deliveries` (fields `accepted`, `duplicate`, `rejected`, `error`, counted by the
web tier) and `handlers` (fields `ok:<handler>` and `failed:<handler>`, counted by the
workers). A tally that cannot be written (Redis away) is kept for the next flush.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable

import redis

from .flush_thread import FlushThread

log = logging.getLogger(__name__)

KEY_PREFIX = "tw:history:"
FLUSH_SECONDS = 5.0
KEEP_SECONDS = 2 * 3600
DELIVERIES = "deliveries"
HANDLERS = "handlers"


def key(series: str, minute: int) -> str:
    return f"{KEY_PREFIX}{series}:{minute}"


class Tally:
    """Counts by (series, minute, field) in memory, flushed to Redis from a daemon thread.

    `bind(connection)` says where to flush; until then `count` is a no-op. The thread
    starts with the first count, so a process forked after `bind` (gunicorn's workers,
    under `preload_app`) starts its own, with an empty tally; what is left at exit is
    flushed then. With `interval=None` there is no thread: only `flush()` writes.
    """

    def __init__(
        self, interval: float | None = FLUSH_SECONDS, clock: Callable[[], float] = time.time
    ):
        self.clock = clock
        self._counts: Counter[tuple[str, int, str]] = Counter()
        self._lock = threading.Lock()
        self._connection: redis.Redis | None = None
        self._timer = None if interval is None else FlushThread(self, interval, "tw-tallies")
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (tally := me()) and tally._forked())
        atexit.register(lambda: (tally := me()) and tally.flush(quiet=True))

    def bind(self, connection: redis.Redis) -> None:
        """Flush to `connection` from now on; what was counted for another one is sent there."""
        if self._connection is not None and self._connection is not connection:
            self.flush()
        self._connection = connection

    def count(self, series: str, field: str, amount: int = 1) -> None:
        if self._connection is None:
            return
        minute = int(self.clock() // 60)
        with self._lock:
            self._counts[series, minute, field] += amount
        if self._timer is not None:
            self._timer.start()

    def _forked(self) -> None:
        """In a forked child: the parent's counts and lock are not ours."""
        self._counts, self._lock = Counter(), threading.Lock()

    def flush(self, quiet: bool = False) -> int:
        """Add the tally to Redis in one round trip; return how many counts were written.
        What Redis refuses is kept for the next flush (and logged unless `quiet`)."""
        connection = self._connection
        with self._lock:
            counts, self._counts = self._counts, Counter()
        if not counts or connection is None:
            return 0
        pipe = connection.pipeline(transaction=False)
        keys = set()
        for (series, minute, field), amount in counts.items():
            keys.add(key(series, minute))
            pipe.hincrby(key(series, minute), field, amount)
        for name in keys:
            pipe.expire(name, KEEP_SECONDS)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            oldest = int(self.clock() - KEEP_SECONDS) // 60
            with self._lock:
                self._counts.update({k: n for k, n in counts.items() if k[1] > oldest})
            if not quiet:
                log.warning("tallies: could not write outcome counts, kept for later: %s", exc)
            return 0
        return sum(counts.values())


# The process's tally: the web app binds it in `create_app`, the worker in `build_worker`.
TALLY = Tally()


def count(series: str, field: str) -> None:
    TALLY.count(series, field)


def read(
    connection: redis.Redis, series: str, minutes: int = 60, now: float | None = None
) -> list[tuple[int, dict[str, int]]]:
    """The last `minutes` minutes of `series`, oldest first, as (unix minute, {field: n});
    a minute without counts has an empty dict. One pipelined round trip."""
    last = int((time.time() if now is None else now) // 60)
    span = range(last - minutes + 1, last + 1)
    pipe = connection.pipeline(transaction=False)
    for minute in span:
        pipe.hgetall(key(series, minute))
    rows = pipe.execute()
    return [
        (minute, {field.decode(): int(n) for field, n in row.items()})
        for minute, row in zip(span, rows, strict=True)
    ]
