"""Handlers that call the API, for the client's end-to-end tests (real worker processes,
loaded with `TW_HANDLER_MODULES=api_handlers`, the sandbox's address in `TW_API_*`).
Each writes down in Redis what it did, where the test reads it."""

import functools
import os
import time

import redis

from {{ cookiecutter.package_name }}.handlers import ApiError, Event, api, on

RUNS_KEY = "test:api:runs"  # hash: event id -> runs of place_order
PID_KEY = "test:api:pid"  # hash: event id -> pid of the worker to kill now
ORDERS_KEY = "test:api:orders"  # list of "<event id> <order id>", one per order answered
CALLS_KEY = "test:api:calls"  # hash: "ok" or an error code -> calls of check_health
WINDOWS_KEY = "test:api:windows"  # list: the second each call of check_health returned in


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


@on("order.created")
def place_order(event: Event) -> None:
    """Order one seat; on its first run, give the test the chance to kill the worker
    while the order is on its way (`killAt: during`) or once it is placed (`after`)."""
    kill_at = event.object.get("killAt")
    first_run = _redis().hincrby(RUNS_KEY, event.id, 1) == 1
    if first_run and kill_at == "during":
        _redis().hset(PID_KEY, event.id, os.getpid())
    order = api.create_order([{"listingId": event.object["listingId"], "quantity": 1}])
    _redis().rpush(ORDERS_KEY, f"{event.id} {order['id']}")
    if first_run and kill_at == "after":
        _redis().hset(PID_KEY, event.id, os.getpid())
        time.sleep(60)  # killed here, before the worker writes the handler down as done


@on("price.updated")
def check_health(event: Event) -> None:
    try:
        api.health()
    except ApiError as exc:
        _redis().hincrby(CALLS_KEY, exc.code, 1)
        raise
    _redis().rpush(WINDOWS_KEY, int(time.time()))
    _redis().hincrby(CALLS_KEY, "ok", 1)
