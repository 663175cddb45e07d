"""Handlers for the lane tests, loaded into real worker processes with
`TW_HANDLER_MODULES=lane_handlers`.

`apply` runs in its order's lane and writes down every run in Redis (event, start and end
times, whether it failed, how many runs of its order were in flight when it started), so a
test can check the lane's promises from the outside. It fails a share of its runs at
random (`LANE_TEST_FAIL_SHARE`), always for an event with `"poison": true` until the test
sets `CURED_KEY`, and on an event's first run sleeps `data.object.sleep` seconds (to be
killed in the middle). `tally` has no lane: it counts.
"""

import functools
import json
import os
import random
import time

import redis

from {{ cookiecutter.package_name }}.events import Event
from {{ cookiecutter.package_name }}.routing import on

RUNS_PREFIX = "test:lane:runs:"  # list per order: one JSON entry per run of `apply`
INFLIGHT_PREFIX = "test:lane:inflight:"
TALLY_KEY = "test:lane:tally"  # hash: event id -> runs of `tally`
STARTED_KEY = "test:lane:started"  # hash: event id -> pid of the last run started
STARTS_KEY = "test:lane:starts"  # hash: event id -> runs started
CURED_KEY = "test:lane:cured"


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def runs(client: redis.Redis, order: str) -> list[dict]:
    return [json.loads(item) for item in client.lrange(RUNS_PREFIX + order, 0, -1)]


@on("order.*", lane="order")
def apply(event: Event) -> None:
    client = _redis()
    order = event.object["id"]
    started = time.time()
    inflight = client.incr(INFLIGHT_PREFIX + order)
    client.hset(STARTED_KEY, event.id, os.getpid())
    poisoned = bool(event.object.get("poison")) and not client.exists(CURED_KEY)
    failed = poisoned or random.random() < float(os.environ.get("LANE_TEST_FAIL_SHARE", "0"))
    first = client.hincrby(STARTS_KEY, event.id, 1) == 1
    try:
        pause = float(event.object.get("sleep", 0)) if first else 0
        time.sleep(pause or random.uniform(0, 0.003))
    finally:
        client.decr(INFLIGHT_PREFIX + order)
        entry = {
            "event": event.id, "type": event.type, "start": started, "end": time.time(),
            "failed": failed, "inflight": inflight, "pid": os.getpid(),
        }  # fmt: skip
        client.rpush(RUNS_PREFIX + order, json.dumps(entry))
    if failed:
        raise RuntimeError(f"{event.id}: failed on purpose")


@on("order.*")
def tally(event: Event) -> None:
    _redis().hincrby(TALLY_KEY, event.id, 1)
