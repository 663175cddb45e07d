"""Handlers for end-to-end tests: each run is counted in Redis, where the test reads it.

Loaded into real worker processes with `TW_HANDLER_MODULES=recording_handlers`.
"""

import functools
import os

import redis

from {{ cookiecutter.package_name }}.events import Event
from {{ cookiecutter.package_name }}.routing import on

RUNS_KEY = "test:runs"  # hash: "<handler>:<event id>" -> number of runs


@functools.cache
def _redis() -> redis.Redis:
    # TEST_RECORD_REDIS_URL keeps the record apart from the receiver's Redis, as a
    # partner's database would be, for tests that take the receiver's Redis down.
    return redis.Redis.from_url(os.environ.get("TEST_RECORD_REDIS_URL") or os.environ["REDIS_URL"])


def count(handler: str, event: Event) -> None:
    _redis().hincrby(RUNS_KEY, f"{handler}:{event.id}", 1)


@on("order.*")
def record_order(event: Event) -> None:
    count("order", event)


@on("price.updated")
def record_price(event: Event) -> None:
    count("price", event)


@on("*")
def record_everything(event: Event) -> None:
    count("all", event)


def runs(connection: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in connection.hgetall(RUNS_KEY).items()}


def expected_runs(envelopes) -> dict[str, int]:
    """What `runs` should say once every event in `envelopes` was handled exactly once."""
    expected = {}
    for event in envelopes:
        if event["type"].startswith("order."):
            expected[f"order:{event['id']}"] = 1
        if event["type"] == "price.updated":
            expected[f"price:{event['id']}"] = 1
        expected[f"all:{event['id']}"] = 1
    return expected
