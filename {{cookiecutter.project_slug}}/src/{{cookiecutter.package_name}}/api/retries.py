"""When to try an API call again, and how long to wait first: the project's one retry
policy (`retry_policy.py`) with the API client's numbers, and what the API's answer says.

Waits grow as 0.5, 1, 2, 4... seconds (capped at 8), times a random 50-100 % so that
workers that failed together do not come back together (stripe-python's schedule), for
up to 5 retries; a server that says how long to wait (`Retry-After`, or
`X-RateLimit-Reset` when nothing is left) is waited at least that long, up to a minute.
The client owns the loop and the deadline, and asks `POLICY.next_wait` with `server_wait`.
"""

from __future__ import annotations

import time

import httpx

from ..retry_policy import RetryPolicy, parse_seconds

MAX_RETRIES = 5
BASE_SECONDS = 0.5
CAP_SECONDS = 8.0
# A server asking for more than this is not waited for inside one call.
MAX_SERVER_WAIT_SECONDS = 60.0

POLICY = RetryPolicy(
    base=BASE_SECONDS,
    cap=CAP_SECONDS,
    jitter=(0.5, 1.0),
    max_retries=MAX_RETRIES,
    max_server_wait=MAX_SERVER_WAIT_SECONDS,
    server_wait_is_floor=True,
)


def server_wait(response: httpx.Response | None, now: float | None = None) -> float:
    """Seconds the server asked us to wait: until `X-RateLimit-Reset` when the window is
    used up, but no longer than `Retry-After` (which does not depend on our clock); 0 when
    it said nothing."""
    if response is None:
        return 0.0
    headers = response.headers
    waits = []
    retry_after = parse_seconds(headers.get("Retry-After"))
    if retry_after is not None:
        waits.append(retry_after)
    reset = _number(headers.get("X-RateLimit-Reset"))
    used_up = response.status_code == 429 or headers.get("X-RateLimit-Remaining") == "0"
    if reset is not None and used_up:
        waits.append(reset - (time.time() if now is None else now))
    if not waits:
        return 0.0
    return min(max(min(waits), 0.0), MAX_SERVER_WAIT_SECONDS)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
