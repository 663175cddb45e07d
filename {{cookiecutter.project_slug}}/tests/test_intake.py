"""Dedupe + enqueue on a real private Redis: exactly once, routed, never half-done."""

import json
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.events import queue_for
from {{ cookiecutter.package_name }}.intake import (
    SEEN_PREFIX,
    Intake,
    bucket_seconds,
    is_seen,
)
from {{ cookiecutter.package_name }}.testing import make_event


def queue_lengths(redis_conn):
    return {name: redis_conn.llen(f"rq:queue:{name}") for name in ("orders", "prices", "other")}


@pytest.mark.parametrize(
    "event_type, queue",
    [
        ("order.created", "orders"),
        ("order.refunded", "orders"),
        ("price.updated", "prices"),
        ("inventory.updated", "other"),
        ("ping", "other"),
    ],
)
def test_routing_by_family(settings, redis_conn, event_type, queue):
    assert queue_for(event_type) == queue
    assert Intake(redis_conn, settings).submit(make_event(event_type))
    assert queue_lengths(redis_conn)[queue] == 1
    assert sum(queue_lengths(redis_conn).values()) == 1


def test_job_is_an_ordinary_rq_job_carrying_json(settings, redis_conn):
    event = make_event("order.created", {"id": "ord_1"})
    Intake(redis_conn, settings).submit(event)
    job = Job.fetch(event["id"], connection=redis_conn, serializer=JSONSerializer)
    assert job.get_status() == "queued"
    assert job.origin == "orders"
    assert list(job.args) == [event]
    assert job.func_name.endswith(".jobs.handle_event")
    assert job.retries_left == settings.retry_max
    # No pickle anywhere: the payload decodes as JSON.
    assert event["id"] in redis_conn.lrange("rq:queue:orders", 0, -1)[0].decode()


def test_a_queued_job_knows_when_it_was_created_and_enqueued(settings, redis_conn):
    before = datetime.now(UTC).replace(microsecond=0)
    event = make_event("order.created", {"id": "ord_2"})
    Intake(redis_conn, settings).submit(event)
    job = Job.fetch(event["id"], connection=redis_conn, serializer=JSONSerializer)
    assert before <= job.created_at == job.enqueued_at <= datetime.now(UTC)


def test_repeat_within_window_is_not_queued(settings, redis_conn):
    intake = Intake(redis_conn, settings)
    event = make_event()
    assert intake.submit(event) is True
    assert intake.submit(event) is False
    assert intake.submit(dict(event, type="price.updated")) is False
    assert sum(queue_lengths(redis_conn).values()) == 1


def test_seen_ids_expire_with_the_dedupe_window(redis_url, redis_conn):
    """An id is kept in its time bucket for the window, plus at most one bucket."""
    settings = Settings(secrets=("s",), redis_url=redis_url, dedupe_window_seconds=120)
    event = make_event()
    Intake(redis_conn, settings).submit(event)
    (bucket,) = redis_conn.keys(SEEN_PREFIX + "*")
    assert redis_conn.smembers(bucket) == {event["id"].encode()}
    assert 119 <= redis_conn.ttl(bucket) <= 120 + bucket_seconds(120)
    assert is_seen(redis_conn, event["id"], 120)
    assert not is_seen(redis_conn, make_event()["id"], 120)


def test_ids_are_forgotten_after_the_window(redis_url, redis_conn):
    settings = Settings(secrets=("s",), redis_url=redis_url, dedupe_window_seconds=1)
    intake = Intake(redis_conn, settings)
    event = make_event()
    assert intake.submit(event) is True
    assert intake.submit(event) is False
    time.sleep(2.1)  # the window (1 s) plus its one bucket (1 s)
    assert not is_seen(redis_conn, event["id"], 1)
    assert intake.submit(event) is True


def test_concurrent_copies_from_threads_are_queued_once(settings, redis_url):
    events = [make_event() for _ in range(50)]
    pool = redis.ConnectionPool.from_url(redis_url, max_connections=64)
    intake = Intake(redis.Redis(connection_pool=pool), settings)
    barrier = threading.Barrier(8)

    def send_all(_):
        barrier.wait()
        return [intake.submit(event) for event in events]

    with ThreadPoolExecutor(8) as executor:
        outcomes = list(executor.map(send_all, range(8)))
    accepted_per_event = [sum(col) for col in zip(*outcomes, strict=True)]
    assert accepted_per_event == [1] * 50
    assert sum(queue_lengths(redis.Redis(connection_pool=pool)).values()) == 50


def _submit_in_process(args):
    redis_url, events, start = args
    settings = Settings(secrets=("s",), redis_url=redis_url)
    intake = Intake(redis.Redis.from_url(redis_url), settings)
    start.wait()
    return [intake.submit(event) for event in events]


def test_concurrent_copies_from_processes_are_queued_once(redis_url, redis_conn):
    events = [make_event() for _ in range(50)]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(4) as pool:
            pending = pool.map_async(_submit_in_process, [(redis_url, events, start)] * 4)
            start.set()
            outcomes = pending.get(timeout=60)
    assert [sum(col) for col in zip(*outcomes, strict=True)] == [1] * 50
    assert sum(queue_lengths(redis_conn).values()) == 50


def test_failure_part_way_marks_nothing_seen(settings, redis_conn):
    """Redis runs no rollback; the script writes the marker last, so a failed enqueue
    leaves the event free to be delivered again rather than lost."""
    redis_conn.set("rq:queue:orders", "not a list")  # makes RPUSH fail inside the script
    intake = Intake(redis_conn, settings)
    event = make_event("order.created")
    with pytest.raises(redis.ResponseError):
        intake.submit(event)
    assert not is_seen(redis_conn, event["id"], settings.dedupe_window_seconds)
    redis_conn.delete("rq:queue:orders")
    assert intake.submit(event) is True
    assert queue_lengths(redis_conn)["orders"] == 1


def test_job_carries_the_signed_body_byte_for_byte(settings, redis_conn):
    """The worker decodes the very bytes whose signature was checked, whatever their
    spacing or escapes, not a re-encoding of them."""
    event = make_event("order.created", {"id": "ord_1", "note": "caf\u00e9 \u2603"})
    body = json.dumps(event, indent=3, ensure_ascii=False).encode()
    assert Intake(redis_conn, settings).submit(event, body) is True
    assert body in redis_conn.hget(f"rq:job:{event['id']}", "data")
    job = Job.fetch(event["id"], connection=redis_conn, serializer=JSONSerializer)
    assert list(job.args) == [event]


def test_script_is_loaded_again_when_redis_forgot_it(settings, redis_conn):
    intake = Intake(redis_conn, settings)
    assert intake.submit(make_event()) is True
    redis_conn.script_flush()  # as after a Redis restart or failover
    assert intake.submit(make_event()) is True
    assert sum(queue_lengths(redis_conn).values()) == 2


def test_connection_closed_by_redis_is_reopened(settings, redis_conn):
    intake = Intake(redis_conn, settings)
    assert intake.submit(make_event()) is True
    assert redis_conn.client_kill_filter(_type="normal", skipme=True) >= 1
    assert intake.submit(make_event()) is True


def test_a_late_reply_is_never_read_as_the_next_ones(settings, redis_url, redis_conn):
    """After a timeout the connection is dropped: had it been kept, the reply still on
    its way would be taken as the answer to the next event."""
    client = redis.Redis.from_url(redis_url, socket_timeout=0.2)
    intake = Intake(client, settings)
    seen = make_event()
    assert intake.submit(seen) is True
    redis_conn.client_pause(600, all=False)  # holds writes and scripts, not reads
    with pytest.raises(redis.TimeoutError):
        intake.submit(make_event())
    time.sleep(0.7)
    assert intake.submit(seen) is False


_inherited: list[Intake] = []


def _submit_with_inherited_intake(event):
    return _inherited[0].submit(event)


def test_a_forked_child_uses_a_connection_of_its_own(settings, redis_conn):
    """As gunicorn's workers do: the app (and its intake) is built before the fork."""
    intake = Intake(redis_conn, settings)
    assert intake.submit(make_event()) is True  # the parent's connection is open now
    _inherited[:] = [intake]
    opened = redis_conn.info("stats")["total_connections_received"]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        outcomes = pool.map(_submit_with_inherited_intake, [make_event() for _ in range(20)])
    assert outcomes == [True] * 20
    # Sharing the parent's socket would mix up replies; each child opened its own.
    assert redis_conn.info("stats")["total_connections_received"] > opened
    assert intake.submit(make_event()) is True
    assert sum(queue_lengths(redis_conn).values()) == 22


def test_redis_unreachable_raises_and_records_nothing(settings):
    from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port

    down = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    with pytest.raises(redis.ConnectionError):
        Intake(down, settings).submit(make_event())
