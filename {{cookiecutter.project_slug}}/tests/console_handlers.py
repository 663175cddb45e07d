"""Handlers for the console's browser tests: refunds fail while `BROKEN_KEY` is set in the
receiver's Redis, everything else succeeds.

Loaded into real worker processes with `TW_HANDLER_MODULES=console_handlers`.
"""

import functools
import os

import redis

from {{ cookiecutter.package_name }}.handlers import Event, on

BROKEN_KEY = "test:console:broken"


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


@on("order.cancelled")
def refund(event: Event) -> None:
    if _redis().exists(BROKEN_KEY):
        raise ConnectionError("refund service unreachable")


@on("*")
def archive(event: Event) -> None:
    pass
