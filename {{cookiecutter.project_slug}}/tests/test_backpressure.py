"""Backpressure: a queue already holding TW_MAX_QUEUE_DEPTH waiting events refuses more
with 429 and stores nothing, so the sender backs off and retries once workers drain it."""

import dataclasses
import json
import threading

import pytest
from processes import gunicorn, project_env, wait_for, worker
from recording_handlers import expected_runs, runs

from {{ cookiecutter.package_name }} import capture, metrics, replay
from {{ cookiecutter.package_name }}.app import QUEUE_FULL_RETRY_AFTER_SECONDS, create_app
from {{ cookiecutter.package_name }}.config import ConfigError, Settings, settings_from_env
from {{ cookiecutter.package_name }}.intake import Intake, QueueFull, is_seen
from {{ cookiecutter.package_name }}.routing import routes
from {{ cookiecutter.package_name }}.testing import TEST_SECRET, make_event, run_worker, signed_post

DEPTH = 3


@pytest.fixture
def limited(settings):
    return dataclasses.replace(settings, max_queue_depth=DEPTH, capture_max_events=100)


@pytest.fixture
def limited_client(limited, redis_conn):
    routes.clear_handlers()  # nothing to run; `testing` puts the handlers back after
    return create_app(limited, connection=redis_conn).test_client()


def refusals() -> float:
    """The process's `tw_webhooks_rejected_total{code="queue_full"}` so far."""
    value = metrics.REGISTRY.get_sample_value("tw_webhooks_rejected_total", {"code": "queue_full"})
    return value or 0.0


def stored_keys(redis_conn) -> set[bytes]:
    return set(redis_conn.keys("*"))


def test_the_setting_defaults_to_a_generous_depth_and_zero_turns_it_off():
    assert settings_from_env({}).max_queue_depth == Settings.max_queue_depth == 100_000
    assert settings_from_env({"TW_MAX_QUEUE_DEPTH": "0"}).max_queue_depth == 0
    assert settings_from_env({"TW_MAX_QUEUE_DEPTH": "250"}).max_queue_depth == 250
    with pytest.raises(ConfigError, match="TW_MAX_QUEUE_DEPTH must be at least 0"):
        settings_from_env({"TW_MAX_QUEUE_DEPTH": "-1"})


def test_a_full_queue_answers_429_stores_nothing_and_accepts_once_drained(
    limited_client, limited, redis_conn
):
    waiting = [make_event("order.created") for _ in range(DEPTH)]
    assert [signed_post(limited_client, e).status_code for e in waiting] == [202] * DEPTH
    before, keys_before = refusals(), stored_keys(redis_conn)

    late = make_event("order.created")
    refused = signed_post(limited_client, late)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == str(QUEUE_FULL_RETRY_AFTER_SECONDS)
    error = refused.get_json()["error"]
    assert error["code"] == "queue_full"
    assert error["message"] == (
        f"Not stored: the orders queue already holds {DEPTH} waiting events; retry later."
    )
    assert error["requestId"] == refused.headers["X-Request-Id"]
    assert refusals() == before + 1
    # Nothing of it: no job, no seen mark, not queued, not archived.
    assert stored_keys(redis_conn) == keys_before
    assert redis_conn.llen("rq:queue:orders") == DEPTH
    assert not is_seen(redis_conn, late["id"], limited.dedupe_window_seconds)
    assert len(list(capture.read(redis_conn))) == DEPTH

    # A repeat of a stored event is still a duplicate, and other queues still take events.
    assert signed_post(limited_client, waiting[0]).status_code == 200
    assert signed_post(limited_client, make_event("price.updated")).status_code == 202

    run_worker(redis_conn, limited)  # the workers drain the queue
    accepted = signed_post(limited_client, late)
    assert accepted.status_code == 202 and accepted.get_json()["status"] == "accepted"
    assert redis_conn.llen("rq:queue:orders") == 1


def test_the_limit_counts_waiting_jobs_per_queue_and_zero_means_none(settings, redis_conn):
    intake = Intake(redis_conn, dataclasses.replace(settings, max_queue_depth=2))
    for _ in range(2):
        assert intake.submit(make_event("order.created"))
    with pytest.raises(QueueFull) as full:
        intake.submit(make_event("order.cancelled"))
    assert (full.value.queue, full.value.limit) == ("orders", 2)
    assert intake.submit(make_event("inventory.updated"))  # the "other" queue has room

    unlimited = Intake(redis_conn, dataclasses.replace(settings, max_queue_depth=0))
    assert all(unlimited.submit(make_event("order.created")) for _ in range(5))
    assert redis_conn.llen("rq:queue:orders") == 7


@pytest.mark.e2e
def test_refused_events_are_delivered_by_the_senders_retries_once_a_worker_drains(
    redis_url, redis_conn, tmp_path
):
    """No worker: the queue fills to the limit and the rest are refused; a worker starts:
    the sender's retries get in, and every event is handled exactly once."""
    env = project_env(redis_url, TW_HANDLER_MODULES="recording_handlers", TW_MAX_QUEUE_DEPTH="4")
    events = [make_event("order.created") for _ in range(16)]
    deliveries = [replay.Delivery(json.dumps(e).encode(), e["id"]) for e in events]
    web_log = tmp_path / "web.log"
    with gunicorn(env, web_log, workers=2) as base:
        options = replay.Options(
            url=base + "{{ cookiecutter.webhook_path }}",
            secrets=(TEST_SECRET,),
            concurrency=4,
            max_attempts=200,
            backoff_max=0.2,  # the receiver asks for 30 s; the test has no such patience
        )
        results: list[replay.Result] = []
        sender = threading.Thread(target=lambda: results.extend(replay.run(deliveries, options)))
        sender.start()
        try:
            wait_for(lambda: web_log.read_text().count(" 429 queue_full ") >= 8)
            assert redis_conn.llen("rq:queue:orders") == 4  # full, and never more
            with worker(env, tmp_path / "worker.log"):
                sender.join(timeout=60)
                assert not sender.is_alive()
                wait_for(lambda: runs(redis_conn) == expected_runs(events), timeout=30)
        finally:
            sender.join(timeout=60)
    assert sorted(r.outcome for r in results) == ["accepted"] * len(events)
    # Every sender was refused while the queue was full, and each refusal was retried.
    assert sum(r.attempts > 1 for r in results) >= options.concurrency
    assert web_log.read_text().count(" 429 queue_full ") == sum(r.attempts - 1 for r in results)
    assert runs(redis_conn) == expected_runs(events)  # each handled once, none lost
