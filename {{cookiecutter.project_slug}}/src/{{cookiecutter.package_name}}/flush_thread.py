"""One daemon thread per process that calls an object's `flush()` every few seconds.

Three parts of the web tier keep per-delivery work in memory and write it out in batches
(`answered.Books`, `logs.BatchingHandler`, `tallies.Tally`); this is their common
timer. It holds its owner weakly, so an owner nobody uses any more stops its thread, and
it starts on first use in each process, so a process forked from one that used it
(gunicorn's workers, under `preload_app`) starts its own. What is left at exit is each
owner's to write (`atexit`, or `logging.shutdown` for a handler).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import Protocol


class Flushable(Protocol):
    def flush(self) -> object: ...


class FlushThread:
    """Calls `owner.flush()` every `interval` seconds, from `start()` until `stop()`."""

    def __init__(self, owner: Flushable, interval: float, name: str) -> None:
        self.interval, self.name = interval, name
        self._owner = weakref.ref(owner)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (timer := me()) and timer._forked())

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the thread in this process unless it runs already (cheap to call often).

        At interpreter shutdown Python (3.12+) refuses new threads: then nothing starts,
        and what the owner holds is written by its exit hook, which runs after the last
        use (the next call tries again, should the refusal have had another cause).
        """
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                with contextlib.suppress(RuntimeError):
                    self._thread = self._spawn()

    def _spawn(self) -> threading.Thread:
        stop, interval, owner = self._stop, self.interval, self._owner

        def run() -> None:
            while not stop.wait(interval):
                target = owner()
                if target is None:
                    return
                target.flush()
                del target

        thread = threading.Thread(target=run, name=self.name, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _forked(self) -> None:
        """In a forked child: the parent's thread is not ours (and its event may be held)."""
        self._thread, self._stop, self._lock = None, threading.Event(), threading.Lock()
