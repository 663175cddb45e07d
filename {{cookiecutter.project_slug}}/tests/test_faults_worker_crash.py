"""Fault: a worker dies (kill -9) in the middle of a handler.

The promise: the event is picked up again by another worker within the stated bound
(about 1.75 x `TW_WORKER_LOST_AFTER_SECONDS`, see `worker.Worker`), the handlers that had
finished do not run again, and the interrupted one finishes exactly once. A handler that
merely runs long is never mistaken for a dead one.
"""

import contextlib
import os
import signal
import threading
import time

import pytest
from processes import project_env, wait_for, worker
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from slow_handlers import FINISHED_AT_KEY, FINISHES_KEY, FIRST_KEY, PID_KEY, STARTS_KEY, counts

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.intake import Intake, open_queues
from {{ cookiecutter.package_name }}.jobs import DONE_META_KEY
from {{ cookiecutter.package_name }}.testing import make_event
from {{ cookiecutter.package_name }}.worker import (
    ABANDONED_META_KEY,
    MAX_REQUEUES,
    Worker,
    requeue_abandoned,
)

pytestmark = pytest.mark.e2e

LOST_AFTER = 3
# The bound the worker promises, plus the handler's own run and a second of slack.
RECOVERY_BOUND = 1.75 * LOST_AFTER + 1
TRIALS = 5
SLEEP = 1.5


def submit(redis_conn, redis_url, event):
    settings = Settings(redis_url=redis_url, retry_max=0)
    assert Intake(redis_conn, settings).submit(event)


def test_kill_9_mid_handler_is_recovered_within_the_bound(redis_url, redis_conn, tmp_path):
    env = project_env(
        redis_url,
        TW_HANDLER_MODULES="slow_handlers",
        TW_WORKER_LOST_AFTER_SECONDS=str(LOST_AFTER),
    )
    recoveries = []
    with contextlib.ExitStack() as stack:
        workers = {}

        def start(n):
            process = stack.enter_context(worker(env, tmp_path / f"worker{n}.log"))
            workers[process.pid] = process

        start(0)
        start(1)
        events = [make_event("order.created", {"sleep": SLEEP}) for _ in range(TRIALS)]
        for trial, event in enumerate(events):
            submit(redis_conn, redis_url, event)
            pid = int(wait_for(lambda e=event: redis_conn.hget(PID_KEY, e["id"]), timeout=15))
            killed_at = time.time()
            os.killpg(pid, signal.SIGKILL)  # the worker and its scheduler, mid-handler
            workers.pop(pid).wait()
            start(trial + 2)  # a new worker takes the dead one's place, as a supervisor would
            wait_for(
                lambda e=event: counts(redis_conn, FINISHES_KEY).get(e["id"]),
                timeout=RECOVERY_BOUND + SLEEP + 10,
            )
            finished_at = float(redis_conn.hget(FINISHED_AT_KEY, event["id"]))
            recoveries.append(finished_at - killed_at)

    ids = [e["id"] for e in events]
    assert counts(redis_conn, FIRST_KEY) == dict.fromkeys(ids, 1)  # done before: not again
    assert counts(redis_conn, STARTS_KEY) == dict.fromkeys(ids, 2)  # interrupted, run again
    assert counts(redis_conn, FINISHES_KEY) == dict.fromkeys(ids, 1)  # finished once
    print(
        f"\nworker kill -9: trials={TRIALS} events={TRIALS} losses=0 duplicates=0 "
        f"recovery max={max(recoveries):.1f}s "
        f"(all: {', '.join(f'{r:.1f}' for r in recoveries)}; handler itself {SLEEP}s)"
    )
    assert max(recoveries) < RECOVERY_BOUND + SLEEP


def test_a_long_handler_is_not_taken_for_a_dead_one(redis_url, redis_conn, tmp_path):
    lost_after = 2
    env = project_env(
        redis_url,
        TW_HANDLER_MODULES="slow_handlers",
        TW_WORKER_LOST_AFTER_SECONDS=str(lost_after),
    )
    event = make_event("order.created", {"sleep": 3 * lost_after})
    with worker(env, tmp_path / "a.log"), worker(env, tmp_path / "b.log"):
        submit(redis_conn, redis_url, event)
        wait_for(lambda: counts(redis_conn, FINISHES_KEY).get(event["id"]), timeout=30)
    assert counts(redis_conn, STARTS_KEY) == {event["id"]: 1}


def abandon(worker_, queue):
    """Take the next job as a worker would, then vanish without a word (a kill -9)."""
    job, _ = queue.dequeue_any(
        [queue], None, connection=queue.connection, serializer=JSONSerializer
    )
    worker_.prepare_execution(job)
    worker_.prepare_job_execution(job)
    return job


def let_time_pass(queue):
    """Age every started entry past its deadline, as the dead worker's silence would."""
    registry = queue.started_job_registry
    entries = queue.connection.zrange(registry.key, 0, -1)
    queue.connection.zadd(registry.key, dict.fromkeys(entries, 0))


def test_abandoned_job_goes_back_to_the_front_with_its_memory(redis_url, redis_conn):
    queue = open_queues(redis_conn)["orders"]
    events = [make_event("order.created"), make_event("order.created")]
    for event in events:
        submit(redis_conn, redis_url, event)
    dead = Worker([queue], connection=redis_conn, lost_after=2)
    job = abandon(dead, queue)
    job.meta[DONE_META_KEY] = ["handlers.first"]
    job.save_meta()
    assert requeue_abandoned(queue) == []  # not silent for long enough yet
    let_time_pass(queue)
    assert requeue_abandoned(queue) == [job.id]
    assert queue.get_job_ids() == [events[0]["id"], events[1]["id"]]  # at the front
    again = queue.fetch_job(job.id)
    assert again.get_status() == "queued"
    assert again.meta[DONE_META_KEY] == ["handlers.first"]
    assert again.meta[ABANDONED_META_KEY] == 1
    assert job.id not in queue.started_job_registry.get_job_ids(cleanup=False)


def test_concurrent_sweeps_requeue_a_job_once(redis_url, redis_conn):
    queue = open_queues(redis_conn)["orders"]
    submit(redis_conn, redis_url, make_event("order.created"))
    job = abandon(Worker([queue], connection=redis_conn, lost_after=2), queue)
    let_time_pass(queue)
    results, barrier = [], threading.Barrier(8)

    def sweep():
        barrier.wait()
        results.append(requeue_abandoned(open_queues(redis_conn)["orders"]))

    threads = [threading.Thread(target=sweep) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(len, results)) == [0] * 7 + [1]
    assert queue.get_job_ids() == [job.id]


def test_a_job_that_keeps_killing_workers_ends_in_the_failed_registry(redis_url, redis_conn):
    queue = open_queues(redis_conn)["orders"]
    event = make_event("order.created")
    submit(redis_conn, redis_url, event)  # no handler retries configured
    worker_ = Worker([queue], connection=redis_conn, lost_after=2)
    for _ in range(MAX_REQUEUES):
        abandon(worker_, queue)
        let_time_pass(queue)
        assert requeue_abandoned(queue) == [event["id"]]
    abandon(worker_, queue)
    let_time_pass(queue)
    assert requeue_abandoned(queue) == []  # out of requeues: RQ's own cleanup decides
    worker_.clean_registries()
    assert event["id"] in FailedJobRegistry(queue=queue).get_job_ids()
    assert queue.count == 0
