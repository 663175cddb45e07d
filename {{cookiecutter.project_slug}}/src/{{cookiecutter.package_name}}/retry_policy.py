"""When to send a request again, and how long to wait first: the API's rules, in one place.

The Tickets Wholesale docs: back off exponentially on 429 and 5xx, never retry other 4xx
except 409. A request that got no answer at all (refused, reset, timed out) is retried
too: an API write carries an idempotency key and a webhook an event id, so sending it
again cannot count it twice. Two senders follow these rules, each with its own numbers:
the API client (`api/retries.py`) and the webhook sender of `replay` and the sandbox
(`replay.py`). Both build a `RetryPolicy` and ask it the same three questions: retry this
answer? how long to wait? does that wait still fit before the deadline?

Standard library only, no clock of its own: callers pass the time, so tests need not wait.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# A Retry-After in seconds; the other form, an HTTP date, falls back on the backoff.
_SECONDS = re.compile(r"\d+(\.\d+)?")


def should_retry(status: int | None) -> bool:
    """Retry no answer (None), 409, 429 and 5xx; never any other status."""
    return status is None or status in (409, 429) or 500 <= status < 600


def parse_seconds(value: str | None) -> float | None:
    """A `Retry-After` given in seconds, or None (absent, an HTTP date, or nonsense)."""
    if value is None or not _SECONDS.fullmatch(value.strip()):
        return None
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, a cap, and what to make of a server's own wait."""

    base: float  # the first wait, in seconds; it doubles on each retry...
    cap: float  # ... up to this, and no backoff wait is ever longer
    # Each wait is the doubled one times a uniform draw in this range, so that senders
    # that failed together do not come back together.
    jitter: tuple[float, float]
    max_retries: int
    # A wait the server asks for (`Retry-After`) is cut to this...
    max_server_wait: float
    # ... and then either only raises the backoff (True: wait at least the backoff, as
    # the API client does) or replaces it (False: the server says when, as the API's
    # webhook sender takes it, `Retry-After: 0` included).
    server_wait_is_floor: bool

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0 for the first), with jitter."""
        nominal = min(self.base * 2**retry, self.cap)
        return min(nominal * random.uniform(*self.jitter), self.cap)

    def delay(self, retry: int, server_wait: float | None = None) -> float:
        """Seconds to wait before retry number `retry`, given what the server asked for
        (None: it said nothing)."""
        if server_wait is None:
            return self.backoff(retry)
        asked = min(max(server_wait, 0.0), self.max_server_wait)
        return max(self.backoff(retry), asked) if self.server_wait_is_floor else asked

    def next_wait(
        self,
        retry: int,
        status: int | None,
        server_wait: float | None = None,
        now: float = 0.0,
        deadline: float | None = None,
    ) -> float | None:
        """The wait before retry number `retry` after an answer of `status`, or None when
        there is none to make: the status is final, the retries are used up, or the wait
        would end at or past `deadline` (on the same clock as `now`)."""
        if not should_retry(status) or retry >= self.max_retries:
            return None
        wait = self.delay(retry, server_wait)
        if deadline is not None and now + wait >= deadline:
            return None
        return wait
