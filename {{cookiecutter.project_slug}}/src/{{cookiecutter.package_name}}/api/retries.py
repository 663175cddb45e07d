"""When to try an API call again, and how long to wait first.

The API's docs: back off exponentially on 429 and 5xx, never retry other 4xx except 409.
A request that got no response (refused, reset, timed out) is retried too: every write
carries an idempotency key, so sending it again cannot place it twice. Waits grow as
0.5, 1, 2, 4... seconds (capped at 8), times a random 50-100 % so that workers that failed
together do not come back together (stripe-python's schedule); a server that says how long
to wait (`Retry-After`, or `X-RateLimit-Reset` when nothing is left) is waited at least
that long. Pure functions: the client owns the loop and the deadline.
"""

from __future__ import annotations

import random
import time

import httpx

MAX_RETRIES = 5
BASE_SECONDS = 0.5
CAP_SECONDS = 8.0
# A server asking for more than this is not waited for inside one call.
MAX_SERVER_WAIT_SECONDS = 60.0


def should_retry(status: int | None) -> bool:
    """Retry network failures (None), 409, 429 and 5xx; never any other status."""
    return status is None or status in (409, 429) or status >= 500


def backoff(retry: int, base: float = BASE_SECONDS, cap: float = CAP_SECONDS) -> float:
    """Seconds to wait before retry number `retry` (0 for the first), with jitter."""
    return min(base * 2**retry, cap) * random.uniform(0.5, 1.0)


def server_wait(response: httpx.Response | None, now: float | None = None) -> float:
    """Seconds the server asked us to wait: until `X-RateLimit-Reset` when the window is
    used up, but no longer than `Retry-After` (which does not depend on our clock); 0 when
    it said nothing."""
    if response is None:
        return 0.0
    headers = response.headers
    waits = []
    retry_after = _number(headers.get("Retry-After"))
    if retry_after is not None:
        waits.append(retry_after)
    reset = _number(headers.get("X-RateLimit-Reset"))
    used_up = response.status_code == 429 or headers.get("X-RateLimit-Remaining") == "0"
    if reset is not None and used_up:
        waits.append(reset - (time.time() if now is None else now))
    if not waits:
        return 0.0
    return min(max(min(waits), 0.0), MAX_SERVER_WAIT_SECONDS)


def retry_delay(retry: int, response: httpx.Response | None, base: float = BASE_SECONDS) -> float:
    """How long to wait before retry number `retry`: the backoff, or longer if asked."""
    return max(backoff(retry, base), server_wait(response))


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP-date Retry-After: fall back on the backoff
