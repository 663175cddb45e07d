"""Memory per remembered event id, from Redis' own `INFO memory`.

100k events go through the project's real intake; then the RQ jobs and queues they
created are deleted, leaving only what the dedupe window remembers, and the growth of
`used_memory` over the empty server is divided by the number of ids.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import redis
from common import intake


def bytes_per_event_id(redis_url: str, package: str, count: int = 100_000) -> float:
    testing = __import__(f"{package}.testing", fromlist=["make_event"])
    conn = redis.Redis.from_url(redis_url)
    conn.flushall()
    time.sleep(1.0)  # let the server shrink its tables after earlier runs
    before = conn.info("memory")["used_memory"]
    shared = intake(redis.Redis.from_url(redis_url, max_connections=8), package)
    stem = f"{int(time.time()):x}"[-8:]

    def submit(chunk: range) -> None:
        for n in chunk:
            # evt_ + 26 characters, the length of the API's ids.
            shared.submit(testing.make_event("order.created", event_id=f"evt_{stem}{n:018d}"))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(submit, [range(i, count, 4) for i in range(4)]))
    # Keep only the dedupe memory: drop the jobs and queues the events created.
    pipe = conn.pipeline(transaction=False)
    for key in conn.scan_iter(match="rq:*", count=10_000):
        pipe.unlink(key)
    pipe.execute()
    time.sleep(1.5)  # serverCron shrinks the emptied key tables, as it would in production
    after = conn.info("memory")["used_memory"]
    remaining = conn.dbsize()
    conn.flushall()
    return (after - before) / count, remaining
