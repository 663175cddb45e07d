"""The job function and the handler registry, run by the real worker on a real Redis."""

import pytest
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.intake import Intake
from {{ cookiecutter.package_name }}.jobs import DONE_META_KEY
from {{ cookiecutter.package_name }}.registry import Registry, registry
from {{ cookiecutter.package_name }}.testing import make_event, run_worker


@pytest.fixture
def calls():
    """Swap the sample handlers for recording ones."""
    registry.clear_handlers()  # `testing._only_project_handlers` puts them back after the test
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


def test_exact_family_and_catch_all_handlers_all_run(calls, settings, redis_conn):
    registry.on("order.created")(record("exact", calls))
    registry.on("order.*")(record("family", calls))
    registry.on("*")(record("everything", calls))
    registry.on("price.updated")(record("prices", calls))
    event = submit(redis_conn, settings, make_event("order.created"))
    run_worker(redis_conn, settings)
    assert calls == [("exact", event["id"]), ("family", event["id"]), ("everything", event["id"])]


def test_unknown_types_reach_only_catch_all_handlers(calls, settings, redis_conn):
    registry.on("order.*")(record("orders", calls))
    registry.on("*")(record("everything", calls))
    event = submit(redis_conn, settings, make_event("inventory.updated"))
    run_worker(redis_conn, settings)
    assert calls == [("everything", event["id"])]


def test_event_without_handlers_is_finished_not_failed(calls, settings, redis_conn):
    event = submit(redis_conn, settings, make_event("inventory.updated"))
    run_worker(redis_conn, settings)
    assert Job.fetch(event["id"], connection=redis_conn).get_status() == "finished"


def test_failing_handler_is_retried_alone(calls, settings, redis_conn):
    registry.on("order.*")(record("books", calls))
    registry.on("order.*")(record("flaky", calls, fail_times=2))
    event = submit(redis_conn, settings, make_event("order.confirmed"))
    run_worker(redis_conn, settings)
    assert [name for name, _ in calls] == ["books", "flaky", "flaky", "flaky"]
    job = Job.fetch(event["id"], connection=redis_conn, serializer=JSONSerializer)
    assert job.get_status() == "finished"
    assert sorted(n.rsplit(".", 1)[-1] for n in job.meta[DONE_META_KEY]) == ["books", "flaky"]


def test_exhausted_retries_land_in_the_failed_registry(calls, settings, redis_conn):
    registry.on("price.updated")(record("broken", calls, fail_times=99))
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


def test_scheduled_retry_uses_the_backoff(calls, redis_url, redis_conn):
    settings = Settings(secrets=("s",), redis_url=redis_url, retry_max=2, retry_base_seconds=30)
    registry.on("order.created")(record("flaky", calls, fail_times=1))
    event = submit(redis_conn, settings, make_event("order.created"))
    run_worker(redis_conn, settings)
    job = Job.fetch(event["id"], connection=redis_conn, serializer=JSONSerializer)
    assert job.get_status() == "scheduled"
    assert job.retries_left == 1


def test_one_function_on_two_matching_patterns_runs_once(calls, settings, redis_conn):
    handler = record("twice", calls)
    registry.on("order.created", "order.*")(handler)
    submit(redis_conn, settings, make_event("order.created"))
    run_worker(redis_conn, settings)
    assert len(calls) == 1


@pytest.mark.parametrize("pattern", ["", "order*", "*.created", "order.*.x*"])
def test_bad_patterns_are_refused(pattern):
    with pytest.raises(ValueError, match="pattern"):
        Registry().on(pattern)


def test_sample_handlers_log_one_line_each(settings, redis_conn, caplog):
    registry.clear()
    registry.load()
    caplog.set_level("INFO")
    for event_type in ("order.created", "price.updated"):
        submit(redis_conn, settings, make_event(event_type, {"id": "x", "listingId": "lst_1"}))
    run_worker(redis_conn, settings)
    # The order.created sample's other handler only says how to configure the API.
    lines = [r for r in caplog.records if ".handlers." in r.name and "API" not in r.getMessage()]
    assert [r.name.rsplit(".", 1)[-1] for r in lines] == ["orders", "prices"]


def test_handler_modules_setting_loads_extra_modules(tmp_path, monkeypatch):
    (tmp_path / "partner_handlers.py").write_text(
        "from {{ cookiecutter.package_name }}.handlers import on\n"
        "@on('order.created')\n"
        "def partner(event):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.clear()
    registry.load(["partner_handlers"])
    names = [h.name for h in registry.handlers_for("order.created")]
    assert "partner_handlers.partner" in names
    assert "{{ cookiecutter.package_name }}.handlers.orders.log_order" in names
