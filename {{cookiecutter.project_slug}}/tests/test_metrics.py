"""Metrics and logs: what the receiver's and the worker's metrics count, and what is logged.

The counters live for the whole test process, so every test compares a scrape taken
before with one taken after.
"""

import dataclasses
import json
import logging
import socket
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import timedelta

import pytest
import redis
from processes import cli, gunicorn, project_env, wait_for, worker, worker_metrics_ports
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq.job import Job
from rq.utils import now, utcformat

from {{ cookiecutter.package_name }} import logs
from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.metrics import (
    receiver_registry,
    serve_receiver_metrics,
    serve_worker_metrics,
)
from {{ cookiecutter.package_name }}.routing import routes
from {{ cookiecutter.package_name }}.testing import TEST_SECRET, signed_headers
from {{ cookiecutter.package_name }}.worker import build_worker

PACKAGE = "{{ cookiecutter.package_name }}"
SAMPLES = "samples/events"


def dead_redis() -> redis.Redis:
    """A client for a port nobody listens on, giving up at once (no retries)."""
    return redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def parse(text: str) -> dict[tuple, float]:
    """{(sample name, (label, value)...): value} from an exposition text."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client) -> dict[tuple, float]:
    """What the metrics port of the receiver behind `client` would answer."""
    app = client.application
    queues = app.extensions["tw_intake"].queues
    lost_after = app.extensions["tw_settings"].worker_lost_after_seconds
    return parse(generate_latest(receiver_registry(queues, lost_after)).decode())


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def handlers():
    """Swap the sample handlers for the test's own."""
    routes.clear_handlers()  # `testing._handlers_under_test` puts them back after the test
    return routes


# --- the web tier ----------------------------------------------------------------------


def test_each_outcome_is_counted_once(client, make_event, signed_post):
    before = scrape(client)
    order, price = make_event("order.created"), make_event("price.updated")
    assert signed_post(client, order).status_code == 202
    assert signed_post(client, price).status_code == 202
    assert signed_post(client, order).status_code == 200
    assert signed_post(client, order, secret="whsec_wrong").status_code == 401
    assert signed_post(client, b"{not json").status_code == 400
    assert signed_post(client, b"x" * (300 * 1024)).status_code == 413
    after = scrape(client)
    assert delta(before, after, "tw_webhooks_received_total") == 6
    assert delta(before, after, "tw_webhooks_enqueued_total", queue="orders") == 1
    assert delta(before, after, "tw_webhooks_enqueued_total", queue="prices") == 1
    assert delta(before, after, "tw_webhooks_duplicate_total") == 1
    assert delta(before, after, "tw_webhook_request_duration_seconds_count") == 6
    assert delta(before, after, "tw_webhook_request_duration_seconds_bucket", le="+Inf") == 6
    assert delta(before, after, "tw_webhook_request_duration_seconds_sum") > 0
    rejected = {
        code: delta(before, after, "tw_webhooks_rejected_total", code=code)
        for code in ("signature_mismatch", "invalid_json", "payload_too_large")
    }
    assert rejected == {"signature_mismatch": 1, "invalid_json": 1, "payload_too_large": 1}


def test_health_checks_are_not_deliveries(client):
    before = scrape(client)
    client.get("/healthz")
    client.get("/readyz")
    after = scrape(client)
    assert delta(before, after, "tw_webhooks_received_total") == 0
    assert delta(before, after, "tw_webhook_request_duration_seconds_count") == 0


def test_the_public_port_serves_no_metrics(client):
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_storage_errors_are_counted_apart_from_rejections(settings, redis_conn, make_event):
    from {{ cookiecutter.package_name }}.testing import signed_post

    dead = dead_redis()
    client = create_app(settings, connection=dead).test_client()
    before = scrape(client)
    assert signed_post(client, make_event()).status_code == 503
    after = scrape(client)
    assert delta(before, after, "tw_webhooks_errors_total", code="storage_unavailable") == 1
    assert delta(before, after, "tw_webhooks_received_total") == 1
    # The scrape itself still answers, and says Redis is away.
    assert after[("tw_redis_up", ())] == 0
    assert ("tw_queue_depth", (("queue", "orders"),)) not in after


def test_queue_depth_retries_and_failed_come_from_redis(
    client, make_event, signed_post, run_worker, handlers
):
    def flaky(event):
        raise RuntimeError("down")

    handlers.on("order.created")(flaky)
    for event in (make_event("order.created"), make_event("order.created")):
        signed_post(client, event)
    signed_post(client, make_event("price.updated"))
    queued = scrape(client)
    assert queued[("tw_redis_up", ())] == 1
    assert queued[("tw_queue_depth", (("queue", "orders"),))] == 2
    assert queued[("tw_queue_depth", (("queue", "prices"),))] == 1
    assert queued[("tw_queue_failed", (("queue", "orders"),))] == 0
    run_worker()  # retries without delay (settings fixture), so both end up failed
    done = scrape(client)
    assert done[("tw_queue_depth", (("queue", "orders"),))] == 0
    assert done[("tw_queue_depth", (("queue", "prices"),))] == 0
    assert done[("tw_queue_failed", (("queue", "orders"),))] == 2
    assert done[("tw_queue_retries_waiting", (("queue", "orders"),))] == 0


def test_oldest_waiting_event_age_and_live_workers(
    client, make_event, signed_post, redis_conn, settings
):
    orders, prices = (("queue", "orders"),), (("queue", "prices"),)
    empty = scrape(client)
    assert empty[("tw_queue_oldest_job_age_seconds", orders)] == 0
    assert empty[("tw_workers_alive", orders)] == 0
    first = make_event("order.created")
    signed_post(client, first)
    # The first event has waited a minute (its stored enqueue time says so).
    minute_ago = utcformat(now() - timedelta(seconds=60))
    redis_conn.hset(Job.key_for(first["id"]), "enqueued_at", minute_ago)
    signed_post(client, make_event("order.created"))
    waiting = scrape(client)
    # The first event's wait, not the second's.
    assert 60 <= waiting[("tw_queue_oldest_job_age_seconds", orders)] < 70
    assert waiting[("tw_queue_oldest_job_age_seconds", prices)] == 0

    worker = build_worker(settings, ["orders"], connection=redis_conn)
    worker.register_birth()
    try:
        alive = scrape(client)
        assert alive[("tw_workers_alive", orders)] == 1
        assert alive[("tw_workers_alive", prices)] == 0
        # A worker killed outright stays registered, but its heartbeat grows old.
        silent = now() - timedelta(seconds=settings.worker_lost_after_seconds + 1)
        redis_conn.hset(worker.key, "last_heartbeat", utcformat(silent))
        assert scrape(client)[("tw_workers_alive", orders)] == 0
    finally:
        worker.register_death()


# --- the metrics port ------------------------------------------------------------------


def test_metrics_port_serves_the_receiver_metrics(client, signed_post, settings, make_event):
    assert signed_post(client, make_event("price.updated")).status_code == 202
    port = free_port()
    server = serve_receiver_metrics(replace(settings, metrics_port=port, metrics_addr="127.0.0.1"))
    try:
        samples = parse(fetch(f"http://127.0.0.1:{port}/metrics"))
    finally:
        server.shutdown()
        server.server_close()
    assert samples[("tw_redis_up", ())] == 1
    assert samples[("tw_queue_depth", (("queue", "prices"),))] == 1
    assert samples[("tw_webhooks_received_total", ())] >= 1
    assert serve_receiver_metrics(replace(settings, metrics_port=0)) is None


# --- handlers (the worker's side) ------------------------------------------------------


def test_handler_runs_are_timed_and_failures_counted(
    client, make_event, signed_post, run_worker, handlers, settings
):
    calls = {"n": 0}

    def fails_once(event):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first try fails")

    def steady(event):
        pass

    handlers.on("order.*")(fails_once)
    handlers.on("order.*")(steady)
    before = scrape(client)
    signed_post(client, make_event("order.confirmed"))
    run_worker()
    after = scrape(client)
    name_of = f"{__name__}.test_handler_runs_are_timed_and_failures_counted.<locals>."
    flaky, ok = name_of + "fails_once", name_of + "steady"
    assert delta(before, after, "tw_handler_duration_seconds_count", handler=flaky) == 2
    assert delta(before, after, "tw_handler_failures_total", handler=flaky) == 1
    # `steady` succeeded on the first attempt and is not run again on the retry.
    assert delta(before, after, "tw_handler_duration_seconds_count", handler=ok) == 1
    assert delta(before, after, "tw_handler_failures_total", handler=ok) == 0
    assert delta(before, after, "tw_handler_duration_seconds_sum", handler=ok) > 0


def test_worker_metrics_port_takes_the_next_free_one():
    port = free_port()
    first = serve_worker_metrics(port, addr="127.0.0.1")
    second = serve_worker_metrics(port, addr="127.0.0.1")
    try:
        # The next free one: port + 1, unless something else holds it.
        assert first.server_port == port < second.server_port < port + 10
        for server in (first, second):
            url = f"http://127.0.0.1:{server.server_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            assert "tw_handler_duration_seconds" in text
    finally:
        for server in (first, second):
            server.shutdown()
            server.server_close()


def test_the_worker_serves_its_metrics_on_the_metrics_address_only(redis_url, tmp_path):
    """TW_METRICS_ADDR keeps the worker's metrics private as it does the receiver's: bound
    to 127.0.0.1, the port answers there and refuses on another loopback address."""
    log = tmp_path / "worker.log"
    env = project_env(redis_url, TW_WORKER_METRICS_PORT=str(free_port()))
    with worker(env, log):
        (port,) = wait_for(lambda: worker_metrics_ports(log)).values()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
    assert f"worker metrics on http://127.0.0.1:{port}/metrics" in log.read_text()


# --- logs ------------------------------------------------------------------------------


def app_records(caplog, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == f"{PACKAGE}.{logger}"]


def test_one_structured_line_per_delivery(client, make_event, signed_post, caplog):
    caplog.set_level(logging.INFO)
    event = make_event("price.updated")
    responses = [
        signed_post(client, event),
        signed_post(client, event),
        signed_post(client, event, secret="whsec_wrong"),
    ]
    records = app_records(caplog, "app")
    assert len(records) == 3
    for response, record, outcome in zip(
        responses, records, ("accepted", "duplicate", "signature_mismatch"), strict=True
    ):
        entry = json.loads(logs.JsonFormatter().format(record))
        assert entry["requestId"] == response.headers["X-Request-Id"]
        assert entry["outcome"] == outcome
        assert entry["status"] == response.status_code
        assert entry["level"] == "info"
        assert isinstance(entry["latencyMs"], float) and entry["latencyMs"] >= 0
        assert entry["requestId"] in entry["message"]
    assert [json.loads(logs.JsonFormatter().format(r))["eventId"] for r in records] == [
        event["id"],
        event["id"],
        None,  # an unverified body is never read, so its id is not known
    ]
    assert records[0].eventType == "price.updated"


def test_health_checks_log_at_debug_only(client, caplog):
    caplog.set_level(logging.INFO)
    client.get("/healthz")
    assert app_records(caplog, "app") == []


def test_one_line_per_handler_run(client, make_event, signed_post, run_worker, caplog, handlers):
    def reserve_seats(event):
        pass

    def audit(event):
        pass

    handlers.on("order.created")(reserve_seats)
    handlers.on("order.*")(audit)
    caplog.set_level(logging.INFO)
    event = make_event("order.created")
    signed_post(client, event)
    run_worker()
    records = app_records(caplog, "jobs")
    assert [r.handler.rsplit(".", 1)[-1] for r in records] == ["reserve_seats", "audit"]
    for record in records:
        entry = json.loads(logs.JsonFormatter().format(record))
        assert entry["eventId"] == event["id"]
        assert entry["eventType"] == "order.created"
        assert entry["outcome"] == "ok"
        assert entry["durationMs"] >= 0
        assert event["id"] in entry["message"]


def test_no_log_line_ever_holds_a_secret(settings, redis_conn, make_event, caplog, handlers):
    """Every path that logs: accepted, duplicate, rejected, 503, a failing handler."""
    from {{ cookiecutter.package_name }}.testing import run_worker, signed_post

    old, new = "whsec_old_" + "a1" * 12, "whsec_new_" + "b2" * 12
    settings = dataclasses.replace(settings, secrets=(old, new), retry_max=1)

    def broken(event):
        raise ValueError(f"cannot handle {event.id}")

    handlers.on("*")(broken)
    caplog.set_level(logging.DEBUG)
    client = create_app(settings, connection=redis_conn).test_client()
    event = make_event()
    for secret in (new, old, new, "whsec_wrong"):
        signed_post(client, event, secret=secret)
    signed_post(client, b"{}", secret=new)
    dead = dead_redis()
    signed_post(create_app(settings, connection=dead).test_client(), make_event(), secret=old)
    run_worker(redis_conn, settings)
    assert len(caplog.records) >= 8
    text = "\n".join(
        formatter.format(record)
        for record in caplog.records
        for formatter in (logs.JsonFormatter(), logging.Formatter(logs.TEXT_FORMAT))
    )
    for secret in (old, new, TEST_SECRET):
        assert secret not in text
    assert "cannot handle" in text  # the handler's failure was logged, traceback included


# --- under gunicorn: several worker processes, real logging setup ----------------------


def booked(port: int, name: str, value: float) -> dict | None:
    """The metrics port's samples once `name` has reached `value`, else None."""
    samples = parse(fetch(f"http://127.0.0.1:{port}/metrics"))
    return samples if samples.get((name, ())) == value else None


def test_gunicorn_workers_sum_their_counts_and_log_json(redis_url, tmp_path):
    """Two gunicorn workers count; the master's metrics port serves the sum of both."""
    port = free_port()
    env = project_env(redis_url, TW_LOG_FORMAT="json", TW_METRICS_PORT=str(port))
    log = tmp_path / "web.log"
    with gunicorn(env, log, workers=2) as base:
        url = base + "{{ cookiecutter.webhook_path }}"
        sent = cli("replay", "--url", url, "--fresh-ids", "--copies", "3", "--concurrency", "6",
                   "-q", SAMPLES, env=env)  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr
        # Workers book their deliveries every tenth of a second (see `answered`).
        samples = wait_for(lambda: booked(port, "tw_webhooks_received_total", 24.0), timeout=5)
        with pytest.raises(urllib.error.HTTPError) as public:
            fetch(base + "/metrics")
        assert public.value.code == 404
        assert json.load(public.value)["error"]["code"] == "not_found"
    totals = (
        samples[("tw_webhooks_received_total", ())],
        samples[("tw_webhooks_duplicate_total", ())],
        sum(v for (n, _), v in samples.items() if n == "tw_webhooks_enqueued_total"),
        samples[("tw_webhook_request_duration_seconds_count", ())],
    )
    assert totals == (24.0, 16.0, 8.0, 24.0)
    assert samples[("tw_queue_depth", (("queue", "orders"),))] > 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    deliveries = [line for line in lines if line.get("eventId")]
    assert len(deliveries) == 24
    assert {line["outcome"] for line in deliveries} == {"accepted", "duplicate"}
    assert all(line["requestId"].startswith("req_") for line in deliveries)


def test_log_level_warning_silences_request_lines(redis_url, tmp_path):
    env = project_env(redis_url, TW_LOG_LEVEL="WARNING")
    log = tmp_path / "web.log"
    with gunicorn(env, log, workers=1) as base:
        url = base + "{{ cookiecutter.webhook_path }}"
        sent = cli("replay", "--url", url, "--fresh-ids", "-q", SAMPLES, env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
    assert " accepted " not in log.read_text()
    assert f"{PACKAGE}.app" not in log.read_text()


def test_request_lines_reach_the_log_at_info(redis_url, tmp_path):
    env = project_env(redis_url)
    log = tmp_path / "web.log"
    with gunicorn(env, log, workers=1) as base:
        body = b'{"id": "evt_logged_1", "type": "order.created", "created": 1, "data": {}}'
        request = urllib.request.Request(
            base + "{{ cookiecutter.webhook_path }}", data=body, headers=signed_headers(body)
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            request_id = response.headers["X-Request-Id"]
        # Lines go out in batches, a tenth of a second apart: one is seen while running.
        wait_for(lambda: request_id in log.read_text(), timeout=5)
    lines = [line for line in log.read_text().splitlines() if request_id in line]
    assert len(lines) == 1
    assert "INFO" in lines[0] and "accepted order.created evt_logged_1" in lines[0]


def test_a_taken_metrics_port_is_logged_and_webhooks_are_still_served(redis_url, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = project_env(redis_url, TW_METRICS_PORT=str(port))
        log = tmp_path / "web.log"
        with gunicorn(env, log, workers=1) as base:
            body = (
                b'{"id": "evt_metrics_port_1", "type": "order.created", "created": 1, "data": {}}'
            )
            request = urllib.request.Request(
                base + "{{ cookiecutter.webhook_path }}", data=body, headers=signed_headers(body)
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 202
    assert f"metrics: cannot serve on 127.0.0.1:{port}" in log.read_text()
