"""A clock that moves only when a test says so, for the rate limiter, retry waits and the
reconciler.

`FakeClock()` is called for the time, and its `sleep` moves the time on instead of
waiting (and keeps each wait, to assert on). Tests of windows, backoff and `Retry-After`
take it where the code takes a clock or a sleep; real time stays where it is the point.
"""

import threading


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
