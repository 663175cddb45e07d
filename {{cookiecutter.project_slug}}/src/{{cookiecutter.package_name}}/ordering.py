"""An opt-in guard for handlers: an older update never overwrites a newer one.

The sender retries, and deliveries race each other through several web and worker
processes, so the `price.updated` of 10:00 can reach a handler after the one of 10:01, and
an `order.confirmed` after its `order.cancelled`. A handler that stores "the current price"
or "the current status" must skip the older event. `is_newest` keeps a high-water mark
per object, the newest event seen so far by its `created` time (ties broken by event id,
so every worker agrees on one order), and compares and moves it in one Lua script, which
Redis runs without interleaving: two workers racing on one object can never both win
with the older event.

    @on("price.updated")
    @newest_only(key=lambda event: event.object["listingId"])
    def store_price(event: Event) -> None:
        ...

Put `@newest_only` below `@on`, so the guarded function is the one registered. The same
event asked about again (a handler retry, a job recovered after a crash) is still the
newest, so a handler that failed after the check does run again. Marks expire after the
dedupe window (`TW_DEDUPE_WINDOW_SECONDS`): past it the receiver would take a redelivered
event as new anyway.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import redis
from rq import get_current_job

from .config import settings_from_env
from .connection import connect
from .events import Event

__all__ = ["is_newest", "newest_only"]

log = logging.getLogger(__name__)

MARK_PREFIX = "tw:newest:"

# KEYS: the mark. ARGV: created, event id, seconds to keep the mark.
# Returns 1 when the event is the newest (the mark now names it), 0 when it is older.
MOVE_IF_NEWER = """
local mark = redis.call('HMGET', KEYS[1], 'created', 'id')
if mark[1] then
  local created, seen = tonumber(ARGV[1]), tonumber(mark[1])
  if created < seen or (created == seen and ARGV[2] < mark[2]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'created', ARGV[1], 'id', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def mark_key(scope: str, key: str) -> str:
    return f"{MARK_PREFIX}{scope}:{key}"


@functools.cache
def _default_connection() -> redis.Redis:
    return connect(settings_from_env())


@functools.cache
def _default_ttl() -> int:
    return settings_from_env().dedupe_window_seconds


def _connection() -> redis.Redis:
    job = get_current_job()
    return job.connection if job is not None else _default_connection()


def is_newest(
    event: Event,
    key: str,
    scope: str | None = None,
    connection: redis.Redis | None = None,
    ttl: int | None = None,
) -> bool:
    """True when `event` is the newest seen for object `key`; records it as such.

    `scope` names the kind of object (default: the event family, so `order.confirmed` and
    `order.cancelled` of one order share a mark). `connection` defaults to the running
    job's Redis; `ttl` to the dedupe window.
    """
    client = connection if connection is not None else _connection()
    move_if_newer = client.register_script(MOVE_IF_NEWER)  # EVALSHA, no I/O to register
    answer = move_if_newer(
        keys=[mark_key(scope or event.family, str(key))],
        args=[int(event.created), event.id, ttl if ttl is not None else _default_ttl()],
    )
    return bool(answer)


def newest_only(
    key: Callable[[Event], Any], scope: str | None = None
) -> Callable[[Callable[[Event], Any]], Callable[[Event], Any]]:
    """Decorate a handler so it runs only for the newest event of each object `key(event)`."""

    def decorator(func: Callable[[Event], Any]) -> Callable[[Event], Any]:
        @functools.wraps(func)
        def guarded(event: Event) -> Any:
            if not is_newest(event, key(event), scope=scope):
                log.info(
                    "%s %s: skipped by %s, a newer event for %s was seen",
                    event.type, event.id, func.__qualname__, key(event),
                )  # fmt: skip
                return None
            return func(event)

        return guarded

    return decorator
