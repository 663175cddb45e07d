"""The per-client rate limit: at most `limit` requests in each one-second window.

Fixed windows aligned on the wall clock's whole seconds: the window of a request is
`int(time.time())`, and it resets at the next whole second, which is what
`X-RateLimit-Reset` says (UTC epoch seconds). Simple to reason about in tests: a burst of
`limit + k` requests inside one second gets exactly `k` answers of 429. Every request counts,
the refused ones included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch second when the window ends

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }

    def retry_after(self, now: float) -> int:
        """Whole seconds until the window resets, at least 1 (for `Retry-After`)."""
        return max(1, int(self.reset - now + 0.999))


class RateLimiter:
    def __init__(self, limit: int, clock: Callable[[], float] = time.time):
        self.limit = limit
        self.clock = clock
        self._counts: dict[str, tuple[int, int]] = {}  # client -> (window, count)
        self._lock = threading.Lock()

    def hit(self, client: str) -> Verdict:
        """Count one request of `client` and say whether it is within the limit."""
        window = int(self.clock())
        with self._lock:
            seen_window, count = self._counts.get(client, (window, 0))
            count = count + 1 if seen_window == window else 1
            self._counts[client] = (window, count)
        return Verdict(count <= self.limit, self.limit, max(0, self.limit - count), window + 1)
