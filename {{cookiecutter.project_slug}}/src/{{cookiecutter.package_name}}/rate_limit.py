"""Rate limits in fixed windows: at most `limit` requests per `period` seconds, per key.

One limiter, used two ways:

- Refusing (`hit`), as the Tickets Wholesale API does and the sandbox serves it: windows
  aligned on the clock's whole periods (`aligned=True`, one wall-clock second), so a
  window ends where `X-RateLimit-Reset` says (UTC epoch seconds) and a burst of
  `limit + k` requests inside one window gets exactly `k` refusals. Every request
  counts, the refused ones included.
- Waiting (`wait`), as a sender paces itself (`replay --rate`): one request per window
  of `1/rate` seconds, each window opening at the request that starts it, so calls go
  out at least `1/rate` apart across threads. A caller finding the window full books the
  next one and sleeps until it opens.

The clock and the sleep are passed in, so that tests move time rather than wait for the
wall clock's second to turn. Standard library only.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """What `hit` decided, with what the API's headers say about it."""

    allowed: bool
    limit: int
    remaining: int
    reset: float  # clock time when the window ends
    at: float  # clock time of the request

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset)),
        }

    def retry_after(self, now: float | None = None) -> int:
        """Whole seconds until the window resets, at least 1 (for `Retry-After`); from
        `now`, or from the time of the request."""
        return max(1, int(self.reset - (self.at if now is None else now) + 0.999))


class RateLimiter:
    def __init__(
        self,
        limit: int,
        period: float = 1.0,
        *,
        aligned: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if limit < 1 or period <= 0:
            raise ValueError(f"a rate limit needs limit >= 1 and period > 0, got {limit}/{period}")
        self.limit, self.period, self.aligned = limit, period, aligned
        self.clock, self.sleep = clock, sleep
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window start, count)
        self._lock = threading.Lock()

    def hit(self, key: str = "") -> Verdict:
        """Count one request of `key` and say whether it is within the limit."""
        now = self.clock()
        with self._lock:
            start, count = self._current(key, now)
            count += 1
            self._windows[key] = (start, count)
        remaining = max(0, self.limit - count)
        return Verdict(count <= self.limit, self.limit, remaining, start + self.period, now)

    def reserve(self, key: str = "") -> float:
        """Book a place for one request of `key`: the seconds to wait before sending it
        (0 when its window has room; else the next window's opening, now booked)."""
        now = self.clock()
        with self._lock:
            start, count = self._current(key, now)
            if count >= self.limit:
                start, count = start + self.period, 0
            self._windows[key] = (start, count + 1)
        return max(0.0, start - now)

    def wait(self, key: str = "") -> None:
        """Return once a request of `key` may go, sleeping until then if need be."""
        seconds = self.reserve(key)
        if seconds > 0:
            self.sleep(seconds)

    def _current(self, key: str, now: float) -> tuple[float, int]:
        """The window of `key` that `now` falls in (or one booked ahead), and its count."""
        start, count = self._windows.get(key, (math.nan, 0))
        if math.isnan(start) or now >= start + self.period or (self.aligned and now < start):
            start = math.floor(now / self.period) * self.period if self.aligned else now
            return start, 0
        return start, count
