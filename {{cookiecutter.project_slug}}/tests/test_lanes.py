"""Lanes (`lanes.py`): one event at a time per order, in arrival order, across real workers.

Events are queued through the receiver's own intake, in a shuffled arrival order with
every delivery repeated; real `worker` processes run them. The lane handler
(`lane_handlers.apply`) writes down each run from the inside, so what is checked is what
a partner's handler would have seen.
"""

import contextlib
import itertools
import random

import pytest
from lane_handlers import TALLY_KEY, runs
from processes import project_env, wait_for, worker

from {{ cookiecutter.package_name }} import lanes
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.intake import Intake
from {{ cookiecutter.package_name }}.testing import make_event

pytestmark = pytest.mark.e2e

TRANSITIONS = ("order.created", "order.confirmed", "order.fulfilled", "order.refunded")


def deliver(redis_conn, redis_url, envelopes, copies=1, seed=0):
    """Submit every envelope `copies` times in a shuffled order; return the event ids in
    the order the intake accepted them (their arrival order), per order."""
    intake = Intake(redis_conn, Settings(redis_url=redis_url, retry_max=5, retry_base_seconds=1))
    deliveries = [envelope for envelope in envelopes for _ in range(copies)]
    random.Random(seed).shuffle(deliveries)
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


def assert_one_at_a_time(client, order):
    """No two runs of the order's lane handler overlapped, by their own clocks and by the
    in-flight counter they saw on entry."""
    spans = sorted((run["start"], run["end"]) for run in runs(client, order))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"{order}: two runs at once"
    assert all(run["inflight"] == 1 for run in runs(client, order)), order


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
