"""Taking jobs off the queues: a job is always in Redis, even between the pop and its start.

RQ's `BLPOP` over several queues leaves a job only in the worker's memory until the start
is written; a worker killed, or a Redis that dies, in that moment would lose it. The
worker's `MovingQueue` moves each job into its queue's intermediate list instead, and
maintenance puts back a job stranded there.
"""

import threading
import time

from rq.serializers import JSONSerializer

from {{ cookiecutter.package_name }}.intake import Intake
from {{ cookiecutter.package_name }}.testing import make_event
from {{ cookiecutter.package_name }}.worker import MovingQueue, requeue_stranded


def queues(redis_conn):
    return [
        MovingQueue(name, connection=redis_conn, serializer=JSONSerializer)
        for name in ("orders", "prices", "other")
    ]


def test_a_taken_job_stays_in_redis_until_it_starts(settings, redis_conn):
    event = make_event("price.updated")
    Intake(redis_conn, settings).submit(event)
    job, queue = MovingQueue.dequeue_any(queues(redis_conn), None, redis_conn)
    assert (job.id, queue.name) == (event["id"], "prices")
    assert redis_conn.llen(queue.key) == 0
    assert queue.intermediate_queue.get_job_ids() == [event["id"]]


def test_priority_order_then_blocking_wait_sees_every_queue(settings, redis_conn):
    intake = Intake(redis_conn, settings)
    first, second = make_event("price.updated"), make_event("order.created")
    intake.submit(first)
    intake.submit(second)
    taken = [MovingQueue.dequeue_any(queues(redis_conn), None, redis_conn)[0].id for _ in "ab"]
    assert taken == [second["id"], first["id"]]  # orders before prices
    # Idle, blocking on the first queue: an event for another queue is still seen soon.
    late = make_event("inventory.updated")
    threading.Timer(0.3, intake.submit, args=(late,)).start()
    started = time.monotonic()
    job, queue = MovingQueue.dequeue_any(queues(redis_conn), 5, redis_conn)
    assert (job.id, queue.name) == (late["id"], "other")
    assert time.monotonic() - started < 3


def test_a_stranded_job_is_requeued_once_after_the_grace_time(settings, redis_conn, run_worker):
    event = make_event("order.created")
    Intake(redis_conn, settings).submit(event)
    _, queue = MovingQueue.dequeue_any(queues(redis_conn), None, redis_conn)
    # Its worker dies here, before recording the start.
    seen: dict = {}
    assert requeue_stranded(queue, seen, older_than=0.2) == []  # first sighting: noted only
    assert requeue_stranded(queue, seen, older_than=0.2) == []  # its worker may yet start it
    time.sleep(0.3)
    assert requeue_stranded(queue, seen, older_than=0.2) == [event["id"]]
    assert requeue_stranded(queue, seen, older_than=0.2) == []  # exactly once
    assert seen == {}
    assert queue.intermediate_queue.get_job_ids() == []
    assert redis_conn.lrange(queue.key, 0, -1) == [event["id"].encode()]
    run_worker()
    assert queue.fetch_job(event["id"]).get_status() == "finished"


def test_a_started_job_is_not_stranded(settings, redis_conn, run_worker):
    Intake(redis_conn, settings).submit(make_event("order.created"))
    run_worker()
    queue = queues(redis_conn)[0]
    assert queue.intermediate_queue.get_job_ids() == []
    assert requeue_stranded(queue, {}, older_than=0) == []


def test_an_old_sighting_does_not_condemn_a_job_that_came_back(settings, redis_conn):
    intake = Intake(redis_conn, settings)
    event = make_event("order.created")
    intake.submit(event)
    _, queue = MovingQueue.dequeue_any(queues(redis_conn), None, redis_conn)
    seen: dict = {}
    requeue_stranded(queue, seen, older_than=0.2)  # seen in the list once
    queue.intermediate_queue.remove(event["id"])  # then its worker started it
    requeue_stranded(queue, seen, older_than=0.2)  # a sweep while it is gone
    time.sleep(0.3)
    redis_conn.rpush(queue.intermediate_queue_key, event["id"])  # taken again, just now
    assert requeue_stranded(queue, seen, older_than=0.2) == []


def test_a_sweep_that_loses_the_race_to_a_starting_worker_moves_nothing(settings, redis_conn):
    event = make_event("order.created")
    Intake(redis_conn, settings).submit(event)
    _, queue = MovingQueue.dequeue_any(queues(redis_conn), None, redis_conn)
    seen = {event["id"]: time.monotonic() - 60}
    queue.intermediate_queue.remove(event["id"])  # started between the listing and the move
    redis_conn.rpush(queue.intermediate_queue_key, "evt_gone")  # and a job that no longer exists
    seen["evt_gone"] = time.monotonic() - 60
    assert requeue_stranded(queue, seen, older_than=1) == []
    assert redis_conn.llen(queue.key) == 0
    assert queue.intermediate_queue.get_job_ids() == []
