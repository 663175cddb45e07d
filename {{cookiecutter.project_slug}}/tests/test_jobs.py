"""The job function and the handler table (`routing`), run by a real worker on real Redis."""

import dataclasses
import importlib
import signal
import subprocess
import sys

import pytest
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from {{ cookiecutter.package_name }}.api import idempotency
from {{ cookiecutter.package_name }}.config import Settings, settings_from_env
from {{ cookiecutter.package_name }}.intake import Intake
from {{ cookiecutter.package_name }}.jobs import DONE_META_KEY, handle_event
from {{ cookiecutter.package_name }}.routing import Routes, routes
from {{ cookiecutter.package_name }}.testing import make_event, run_worker


@pytest.fixture
def calls():
    """Swap the sample handlers for recording ones."""
    routes.clear_handlers()  # `testing._handlers_under_test` puts them back after the test
    log: list[tuple[str, str]] = []
    return log


def record(name, log, fail_times=0):
    failures = {"left": fail_times}

    def handler(event):
        log.append((name, event.id))
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError(f"{name} failed on purpose")

    handler.__qualname__ = name
    return handler


def submit(redis_conn, settings, event):
    assert Intake(redis_conn, settings).submit(event)
    return event


def test_the_in_process_worker_gives_the_signals_back(settings, redis_conn):
    """RQ's worker takes SIGINT and SIGTERM; after `run_worker` the test process has its
    own again (a `multiprocessing.Pool` forked later had hung, its workers deaf to the
    SIGTERM that ends them)."""
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    submit(redis_conn, settings, make_event("order.created"))
    run_worker(redis_conn, settings)
    assert {number: signal.getsignal(number) for number in before} == before


def test_exact_family_and_catch_all_handlers_all_run(calls, settings, redis_conn):
    routes.on("order.created")(record("exact", calls))
    routes.on("order.*")(record("family", calls))
    routes.on("*")(record("everything", calls))
    routes.on("price.updated")(record("prices", calls))
    event = submit(redis_conn, settings, make_event("order.created"))
    run_worker(redis_conn, settings)
    assert calls == [("exact", event["id"]), ("family", event["id"]), ("everything", event["id"])]


def test_unknown_types_reach_only_catch_all_handlers(calls, settings, redis_conn):
    routes.on("order.*")(record("orders", calls))
    routes.on("*")(record("everything", calls))
    event = submit(redis_conn, settings, make_event("inventory.updated"))
    run_worker(redis_conn, settings)
    assert calls == [("everything", event["id"])]


def test_event_without_handlers_is_finished_not_failed(calls, settings, redis_conn):
    event = submit(redis_conn, settings, make_event("inventory.updated"))
    run_worker(redis_conn, settings)
    assert Job.fetch(event["id"], connection=redis_conn).get_status() == "finished"


def test_failing_handler_is_retried_alone(calls, settings, redis_conn):
    routes.on("order.*")(record("books", calls))
    routes.on("order.*")(record("flaky", calls, fail_times=2))
    event = submit(redis_conn, settings, make_event("order.confirmed"))
    run_worker(redis_conn, settings)
    assert [name for name, _ in calls] == ["books", "flaky", "flaky", "flaky"]
    job = Job.fetch(event["id"], connection=redis_conn, serializer=JSONSerializer)
    assert job.get_status() == "finished"
    assert sorted(n.rsplit(".", 1)[-1] for n in job.meta[DONE_META_KEY]) == ["books", "flaky"]


def test_exhausted_retries_land_in_the_failed_registry(calls, settings, redis_conn):
    routes.on("price.updated")(record("broken", calls, fail_times=99))
    event = submit(redis_conn, settings, make_event("price.updated"))
    run_worker(redis_conn, settings)
    assert len(calls) == 1 + settings.retry_max
    failed = FailedJobRegistry("prices", connection=redis_conn)
    assert failed.get_job_ids() == [event["id"]]
    job = Job.fetch(event["id"], connection=redis_conn, serializer=JSONSerializer)
    assert "failed on purpose" in job.latest_result().exc_string


def test_retry_delays_grow_exponentially():
    settings = Settings(retry_max=5, retry_base_seconds=10, retry_max_seconds=100)
    assert settings.retry_intervals == [10, 20, 40, 80, 100]


def test_scheduled_retry_uses_the_backoff(calls, settings, redis_conn):
    settings = dataclasses.replace(settings, retry_max=2, retry_base_seconds=30)
    routes.on("order.created")(record("flaky", calls, fail_times=1))
    event = submit(redis_conn, settings, make_event("order.created"))
    run_worker(redis_conn, settings)
    job = Job.fetch(event["id"], connection=redis_conn, serializer=JSONSerializer)
    assert job.get_status() == "scheduled"
    assert job.retries_left == 1


def test_one_function_on_two_matching_patterns_runs_once(calls, settings, redis_conn):
    handler = record("twice", calls)
    routes.on("order.created", "order.*")(handler)
    submit(redis_conn, settings, make_event("order.created"))
    run_worker(redis_conn, settings)
    assert len(calls) == 1


@pytest.mark.parametrize("pattern", ["", "order*", "*.created", "order.*.x*"])
def test_bad_patterns_are_refused(pattern):
    with pytest.raises(ValueError, match="pattern"):
        Routes().on(pattern)


def handler_package(root, name, modules):
    """Write a package `name` under `root` with one module per type in `modules`, each
    holding one handler that records its runs in `ran` of the package."""
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("ran = []\n")
    for module, event_type in modules.items():
        (package / f"{module}.py").write_text(
            f"from . import ran\n"
            f"from {{ cookiecutter.package_name }}.routing import on\n"
            f"@on({event_type!r})\n"
            f"def handle(event):\n"
            f"    ran.append(({module!r}, event.id))\n"
        )


def test_every_module_of_a_handlers_package_is_loaded(settings, redis_conn, tmp_path, monkeypatch):
    handler_package(tmp_path, "partner_pkg", {"orders": "order.created", "prices": "price.*"})
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = dataclasses.replace(settings, handler_modules=("partner_pkg",))
    events = [make_event(t) for t in ("order.created", "price.updated", "inventory.updated")]
    for event in events:
        submit(redis_conn, settings, event)
    run_worker(redis_conn, settings)
    ran = importlib.import_module("partner_pkg").ran
    assert sorted(ran) == [("orders", events[0]["id"]), ("prices", events[1]["id"])]


def test_handler_modules_come_from_the_package_setting_and_the_extra_modules(tmp_path, monkeypatch):
    handler_package(tmp_path, "partner_main", {"orders": "order.created"})
    (tmp_path / "partner_extra.py").write_text(
        "from {{ cookiecutter.package_name }}.routing import on\n"
        "@on('order.created')\n"
        "def partner(event):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {"TW_HANDLERS_PACKAGE": "partner_main", "TW_HANDLER_MODULES": "partner_extra"}
    modules = settings_from_env(env).handler_modules
    assert modules == ("partner_main", "partner_extra")
    routes.clear()
    routes.load(modules)
    names = [h.name for h in routes.handlers_for("order.created")]
    assert names == ["partner_main.orders.handle", "partner_extra.partner"]


@pytest.mark.parametrize(
    ("env", "modules"),
    [
        ({}, ("{{ cookiecutter.package_name }}.handlers",)),
        ({"TW_HANDLER_MODULES": "a, b"}, ("{{ cookiecutter.package_name }}.handlers", "a", "b")),
        ({"TW_HANDLERS_PACKAGE": "", "TW_HANDLER_MODULES": "a"}, ("a",)),
        ({"TW_HANDLERS_PACKAGE": " "}, ()),
    ],
)
def test_the_handlers_package_is_loaded_unless_set_empty(env, modules):
    assert settings_from_env(env).handler_modules == modules


def test_each_handler_run_numbers_its_api_writes_afresh(calls):
    """The jobs say which handler runs (`handler_context`); the API client's keys follow
    it: the same handler run again for the same event makes the same keys, another
    handler or event others, and outside a handler each write gets a random one."""
    keys: dict[str, list[str]] = {}

    def writer(name):
        def handler(event):
            keys.setdefault(name, []).append(idempotency.next_key("POST", "/v1/orders"))

        handler.__qualname__ = name
        return handler

    routes.on("order.created")(writer("first"))
    routes.on("order.created")(writer("second"))
    event = make_event("order.created")
    handle_event(event)
    handle_event(event)
    handle_event(make_event("order.created"))
    assert keys["first"][0] == keys["first"][1] != keys["first"][2]
    assert keys["second"][0] == keys["second"][1] != keys["first"][0]
    assert idempotency.next_key("POST", "/v1/orders") != idempotency.next_key("POST", "/v1/orders")


def test_the_jobs_do_not_load_the_api_client():
    """A worker whose handlers never call the API loads neither the client nor httpx: the
    jobs set the handler's context in `handler_context`, which the client reads."""
    code = (
        "import sys, {{ cookiecutter.package_name }}.jobs; "
        "print(sorted(m for m in ('httpx', '{{ cookiecutter.package_name }}.api') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
