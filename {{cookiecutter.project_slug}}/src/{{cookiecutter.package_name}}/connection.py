"""The one way this project opens Redis: a URL (`redis://`, `rediss://` for TLS,
`unix://`) or, when `TW_REDIS_SENTINELS` is set, the master that Sentinel names.

Timeouts are short on purpose: a receiver that waits a long time on a sick Redis ties up
its web workers, while a quick 503 makes the sender retry later, which is what we want.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from .config import Settings

SOCKET_TIMEOUT_SECONDS = 5
CONNECT_TIMEOUT_SECONDS = 2
# One quick reconnect covers a connection Redis closed while idle; more would only delay
# the 503 that sends the sender away to retry later. A command retried after its reply was
# lost is harmless here: the intake script finds its own marker and answers "duplicate".
RETRY = Retry(ExponentialBackoff(cap=0.25, base=0.025), retries=1)


def connect(settings: Settings) -> redis.Redis:
    """Return a client for the configured Redis (a pool is created, no I/O yet)."""
    options = {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "health_check_interval": 30,
        "retry": RETRY,
    }
    if settings.redis_sentinels:
        # REDIS_URL still carries the password, database and TLS choice for the master.
        url_options = redis.connection.parse_url(settings.redis_url)
        url_options.pop("host", None)
        url_options.pop("port", None)
        if url_options.pop("connection_class", None) is redis.SSLConnection:
            url_options["ssl"] = True
        sentinel = Sentinel(
            list(settings.redis_sentinels),
            sentinel_kwargs={"socket_timeout": SOCKET_TIMEOUT_SECONDS},
            **options,
        )
        return sentinel.master_for(settings.redis_sentinel_master, **url_options)
    return redis.Redis.from_url(settings.redis_url, **options)
