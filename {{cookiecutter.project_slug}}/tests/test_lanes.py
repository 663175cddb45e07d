"""Lanes (`lanes.py`): one event at a time per order, in arrival order, across real workers.

Events are queued through the receiver's own intake, in a shuffled arrival order with
every delivery repeated; real `worker` processes run them. The lane handler
(`lane_handlers.apply`) writes down each run from the inside, so what is checked is what
a partner's handler would have seen.
"""

import contextlib
import itertools
import os
import random
import signal
import time

import pytest
from lane_handlers import CURED_KEY, STARTED_KEY, TALLY_KEY, runs
from processes import cli, project_env, wait_for, worker
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from {{ cookiecutter.package_name }} import lanes
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.intake import Intake
from {{ cookiecutter.package_name }}.testing import make_event

pytestmark = pytest.mark.e2e

TRANSITIONS = ("order.created", "order.confirmed", "order.fulfilled", "order.refunded")


def deliver(redis_conn, redis_url, envelopes, copies=1, shuffle=True, retry_max=5, retry_base=1):
    """Submit every envelope `copies` times, shuffled; return the event ids in the order the
    intake accepted them (their arrival order), per order. The retries are the intake's."""
    settings = Settings(redis_url=redis_url, retry_max=retry_max, retry_base_seconds=retry_base)
    intake = Intake(redis_conn, settings)
    deliveries = [envelope for envelope in envelopes for _ in range(copies)]
    if shuffle:
        random.Random(0).shuffle(deliveries)
    arrived: dict[str, list[str]] = {}
    for envelope in deliveries:
        if intake.submit(envelope):
            arrived.setdefault(envelope["data"]["object"]["id"], []).append(envelope["id"])
    return arrived


def order_events(order, count=4, **extra):
    return [
        make_event(kind, {"id": order, **extra}, event_id=f"evt_{order}_{n}")
        for n, kind in enumerate(TRANSITIONS[:count])
    ]


def succeeded(client, order):
    return [run["event"] for run in runs(client, order) if not run["failed"]]


def assert_one_at_a_time(client, order, counter=True):
    """No two runs of the order's lane handler overlapped, by their own clocks and (unless
    a run was killed before it could count itself out) by the in-flight counter they saw."""
    spans = sorted((run["start"], run["end"]) for run in runs(client, order))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"{order}: two runs at once"
    if counter:
        assert all(run["inflight"] == 1 for run in runs(client, order)), order


def lane_of(order):
    return f"lane_handlers.apply:{order}"


def test_200_orders_run_each_transition_once_in_arrival_order_one_at_a_time(
    redis_url, redis_conn, tmp_path
):
    env = project_env(
        redis_url,
        TW_HANDLER_MODULES="lane_handlers",
        TW_RETRY_BASE_SECONDS="1",
        LANE_TEST_FAIL_SHARE="0.1",
    )
    orders = [f"ord_{n:03d}" for n in range(200)]
    envelopes = [event for order in orders for event in order_events(order)]
    with contextlib.ExitStack() as stack:
        for n in range(4):
            stack.enter_context(worker(env, tmp_path / f"worker{n}.log"))
        arrived = deliver(redis_conn, redis_url, envelopes, copies=3)

        def drained():
            return all(len(succeeded(redis_conn, order)) >= 4 for order in orders)

        wait_for(drained, timeout=240, interval=0.5)
    failures = 0
    for order in orders:
        assert succeeded(redis_conn, order) == arrived[order], order
        assert_one_at_a_time(redis_conn, order)
        failures += sum(run["failed"] for run in runs(redis_conn, order))
    assert failures > 0  # the retries were exercised
    tally = {key.decode(): int(n) for key, n in redis_conn.hgetall(TALLY_KEY).items()}
    assert tally == {envelope["id"]: 1 for envelope in envelopes}
    assert not redis_conn.smembers(lanes.ALL_KEY)  # every lane emptied and removed


# A poison event fails twice, straight away.
ONE_RETRY = {"retry_max": 1, "retry_base": 0}


def test_a_poison_event_blocks_its_own_lane_only_until_retried_or_skipped(
    redis_url, redis_conn, tmp_path
):
    env = project_env(redis_url, TW_HANDLER_MODULES="lane_handlers")
    poisoned = [
        make_event(kind, {"id": order, "poison": n == 0}, event_id=f"evt_{order}_{n}")
        for order in ("ord_retry", "ord_skip")
        for n, kind in enumerate(TRANSITIONS)
    ]
    healthy = order_events("ord_ok")
    failed = FailedJobRegistry("orders", connection=redis_conn, serializer=JSONSerializer)
    with contextlib.ExitStack() as stack:
        for n in range(2):
            stack.enter_context(worker(env, tmp_path / f"worker{n}.log"))
        arrived = deliver(redis_conn, redis_url, poisoned + healthy, shuffle=False, **ONE_RETRY)
        wait_for(lambda: len(failed) == 2 and len(succeeded(redis_conn, "ord_ok")) == 4)
        # Everything else ran: the healthy order, and the lane-free handler of every event.
        assert succeeded(redis_conn, "ord_ok") == arrived["ord_ok"]
        wait_for(lambda: redis_conn.hlen(TALLY_KEY) == 12)
        assert succeeded(redis_conn, "ord_retry") == succeeded(redis_conn, "ord_skip") == []
        listing = cli("lanes", "list", "--blocked", env=env)
        assert listing.returncode == 0, listing.stderr
        blocked = [line.split()[0] for line in listing.stdout.splitlines()[1:]]
        assert sorted(blocked) == [lane_of("ord_retry"), lane_of("ord_skip")]
        assert "evt_ord_retry_0" in listing.stdout and "blocked" in listing.stdout
        assert lanes.blocked_stats(redis_conn)[0] == 2

        redis_conn.set(CURED_KEY, 1)
        retried = cli("failed", "retry", "evt_ord_retry_0", env=env)
        assert retried.returncode == 0, retried.stderr
        wait_for(lambda: len(succeeded(redis_conn, "ord_retry")) == 4)
        assert succeeded(redis_conn, "ord_retry") == arrived["ord_retry"]

        skipped = cli("lanes", "skip", lane_of("ord_skip"), env=env)
        assert skipped.returncode == 0, skipped.stderr
        assert "evt_ord_skip_0" in skipped.stdout
        wait_for(lambda: len(succeeded(redis_conn, "ord_skip")) == 3)
        assert succeeded(redis_conn, "ord_skip") == arrived["ord_skip"][1:]
        assert lanes.blocked_stats(redis_conn) == (0, 0.0)
        assert cli("lanes", "list", env=env).stdout.strip() == "no lane has events waiting"
    for order in ("ord_ok", "ord_retry", "ord_skip"):
        assert_one_at_a_time(redis_conn, order)


def test_with_lane_on_failure_skip_the_lane_moves_on_by_itself(redis_url, redis_conn, tmp_path):
    env = project_env(redis_url, TW_HANDLER_MODULES="lane_handlers", TW_LANE_ON_FAILURE="skip")
    events = [
        make_event(kind, {"id": "ord_p", "poison": n == 1}, event_id=f"evt_ord_p_{n}")
        for n, kind in enumerate(TRANSITIONS)
    ]
    with worker(env, tmp_path / "worker.log"):
        arrived = deliver(redis_conn, redis_url, events, shuffle=False, **ONE_RETRY)
        wait_for(lambda: len(succeeded(redis_conn, "ord_p")) == 3)
    assert succeeded(redis_conn, "ord_p") == [arrived["ord_p"][n] for n in (0, 2, 3)]
    assert lanes.blocked_stats(redis_conn) == (0, 0.0)
    assert not redis_conn.smembers(lanes.ALL_KEY)


LOST_AFTER = 3


def test_a_worker_killed_inside_a_lane_frees_it_once_declared_lost(redis_url, redis_conn, tmp_path):
    env = project_env(
        redis_url, TW_HANDLER_MODULES="lane_handlers", TW_WORKER_LOST_AFTER_SECONDS=str(LOST_AFTER)
    )
    events = [
        make_event(kind, {"id": "ord_k", "sleep": 30 if n == 0 else 0}, event_id=f"evt_ord_k_{n}")
        for n, kind in enumerate(TRANSITIONS)
    ]
    with contextlib.ExitStack() as stack:
        workers = {}
        for n in range(2):
            process = stack.enter_context(worker(env, tmp_path / f"worker{n}.log"))
            workers[process.pid] = process
        arrived = deliver(redis_conn, redis_url, events, shuffle=False)
        pid = int(wait_for(lambda: redis_conn.hget(STARTED_KEY, "evt_ord_k_0")))
        time.sleep(0.5)  # the other worker takes the next events meanwhile, and parks them
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        workers[pid].wait()
        wait_for(lambda: len(succeeded(redis_conn, "ord_k")) == 4, timeout=60)
    assert succeeded(redis_conn, "ord_k") == arrived["ord_k"]
    rerun = runs(redis_conn, "ord_k")[0]
    assert rerun["event"] == "evt_ord_k_0" and rerun["pid"] != pid
    assert rerun["start"] - killed_at <= 1.75 * LOST_AFTER + 5
    assert_one_at_a_time(redis_conn, "ord_k", counter=False)
    tally = {key.decode(): int(n) for key, n in redis_conn.hgetall(TALLY_KEY).items()}
    assert tally == {event["id"]: 1 for event in events}
