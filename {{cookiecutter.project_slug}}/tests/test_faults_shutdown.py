"""Fault: SIGTERM to gunicorn and to workers under load (a deploy, a scale-down).

Promises: in-flight requests finish or get a 5xx, never a 2xx for an event not stored (the
sender's retries then reach the next receiver); in-flight jobs finish, or, when the
shutdown is forced, come back and finish exactly once.
"""

import json
import signal
import sys
import threading
import time

import pytest
from processes import project_env, running, wait_for, wait_until_up, worker
from recording_handlers import runs
from slow_handlers import FINISHES_KEY, FIRST_KEY, STARTS_KEY, counts

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.intake import Intake
from {{ cookiecutter.package_name }}.replay import Delivery, Options, run
from {{ cookiecutter.package_name }}.testing import TEST_SECRET, make_event

pytestmark = pytest.mark.e2e
PACKAGE = "{{ cookiecutter.package_name }}"


def gunicorn_command(port):
    return [
        sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
        "--bind", f"127.0.0.1:{port}", "--workers", "2", f"{PACKAGE}.app:create_app()",
    ]  # fmt: skip


def test_sigterm_to_gunicorn_under_load_costs_no_event(redis_url, redis_conn, tmp_path):
    env = project_env(redis_url, TW_HANDLER_MODULES="recording_handlers")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    events = [make_event("order.created", {"n": n}) for n in range(400)]
    deliveries = [Delivery(json.dumps(e).encode(), "test") for e in events]
    options = Options(
        url=base + "{{ cookiecutter.webhook_path }}",
        secrets=(TEST_SECRET,),
        concurrency=8,
        max_attempts=40,
        backoff_base=0.1,
        backoff_max=1.0,
        rate=200,  # about two seconds of traffic, so the stop lands in the middle of it
    )
    done, answered = [], []
    with worker(env, tmp_path / "worker.log"):
        with running(gunicorn_command(port), env, tmp_path / "web1.log") as first:
            wait_until_up(base + "/readyz", first, tmp_path / "web1.log")
            sender = threading.Thread(
                target=lambda: done.append(run(deliveries, options, on_result=answered.append))
            )
            sender.start()
            wait_for(lambda: len(answered) >= 100, timeout=30, interval=0.01)
            first.send_signal(signal.SIGTERM)  # the master: graceful stop of its workers
            first.wait(timeout=40)
        assert first.returncode == 0
        # The next release comes up on the same address; the sender's retries find it.
        with running(gunicorn_command(port), env, tmp_path / "web2.log") as second:
            wait_until_up(base + "/readyz", second, tmp_path / "web2.log")
            sender.join(timeout=120)
            results = done[0]
            expected = {f"{k}:{e['id']}": 1 for e in events for k in ("order", "all")}
            wait_for(lambda: runs(redis_conn) == expected, timeout=60, interval=0.2)
    assert [r for r in results if not r.ok] == []
    retried = sum(1 for r in results if r.attempts > 1)
    print(
        f"\ngunicorn SIGTERM: trials=1 events={len(events)} losses=0 duplicates=0 "
        f"deliveries retried={retried}"
    )


def submit_all(redis_conn, redis_url, events):
    intake = Intake(redis_conn, Settings(redis_url=redis_url, retry_base_seconds=1))
    for event in events:
        assert intake.submit(event)


def test_sigterm_to_a_busy_worker_finishes_its_job_then_exits(redis_url, redis_conn, tmp_path):
    env = project_env(redis_url, TW_HANDLER_MODULES="slow_handlers")
    events = [make_event("order.created", {"sleep": 0.05}) for _ in range(200)]
    submit_all(redis_conn, redis_url, events)
    with worker(env, tmp_path / "a.log") as first, worker(env, tmp_path / "b.log"):
        wait_for(lambda: len(counts(redis_conn, FINISHES_KEY)) >= 40, timeout=30, interval=0.01)
        first.send_signal(signal.SIGTERM)  # warm shutdown, mid-job most likely
        first.wait(timeout=20)
        with worker(env, tmp_path / "c.log"):
            ids = [e["id"] for e in events]
            wait_for(lambda: len(counts(redis_conn, FINISHES_KEY)) == len(ids), timeout=60)
    assert first.returncode == 0
    for key in (FIRST_KEY, STARTS_KEY, FINISHES_KEY):
        assert counts(redis_conn, key) == dict.fromkeys(ids, 1), key
    print(f"\nworker SIGTERM (warm): trials=1 events={len(ids)} losses=0 duplicates=0")


def test_forced_shutdown_mid_job_is_recovered_once(redis_url, redis_conn, tmp_path):
    env = project_env(
        redis_url, TW_HANDLER_MODULES="slow_handlers", TW_WORKER_LOST_AFTER_SECONDS="3"
    )
    event = make_event("order.created", {"sleep": 3})
    submit_all(redis_conn, redis_url, [event])
    with worker(env, tmp_path / "a.log") as first:
        wait_for(lambda: counts(redis_conn, STARTS_KEY).get(event["id"]), timeout=15)
        first.send_signal(signal.SIGTERM)
        time.sleep(1.2)  # RQ ignores a second signal within a second
        first.send_signal(signal.SIGTERM)  # the second SIGTERM: cold shutdown, job cut short
        first.wait(timeout=20)
    assert counts(redis_conn, FINISHES_KEY) == {}
    started = time.monotonic()
    with worker(env, tmp_path / "b.log"):
        wait_for(lambda: counts(redis_conn, FINISHES_KEY).get(event["id"]), timeout=40)
    recovered = time.monotonic() - started
    assert counts(redis_conn, FIRST_KEY) == {event["id"]: 1}
    assert counts(redis_conn, STARTS_KEY) == {event["id"]: 2}
    assert counts(redis_conn, FINISHES_KEY) == {event["id"]: 1}
    print(f"\nworker SIGTERM x2 (cold): trials=1 events=1 losses=0 duplicates=0 "
          f"recovered in {recovered:.1f}s (handler 3 s)")  # fmt: skip
