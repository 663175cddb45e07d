"""The API client in real worker processes against the sandbox: an order placed by a
handler whose worker is killed (kill -9) is placed once, and workers share one rate budget."""

import contextlib
import os
import signal

import pytest
from api_handlers import CALLS_KEY, ORDERS_KEY, PID_KEY, RUNS_KEY, WINDOWS_KEY
from processes import project_env, wait_for, worker

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.intake import Intake
from {{ cookiecutter.package_name }}.testing import make_event

pytestmark = pytest.mark.e2e

LISTING = "lst_7Qm2Floor"  # of the sandbox's seeded show 12345


def api_env(redis_url, sandbox, **extra):
    return project_env(
        redis_url,
        TW_HANDLER_MODULES="api_handlers",
        TW_API_BASE_URL=sandbox.url,
        TW_API_CLIENT_ID=sandbox.client_id,
        TW_API_CLIENT_SECRET=sandbox.client_secret,
        **extra,
    )


def submit(redis_conn, redis_url, events):
    intake = Intake(redis_conn, Settings(redis_url=redis_url, retry_base_seconds=1))
    for event in events:
        assert intake.submit(event)


def test_an_order_placed_by_a_killed_handler_is_placed_once(
    start_sandbox, redis_url, redis_conn, tmp_path
):
    sandbox = start_sandbox(latency_ms=300)  # time to be killed while the order is on its way
    env = api_env(redis_url, sandbox, TW_WORKER_LOST_AFTER_SECONDS="2")
    events = [
        make_event("order.created", {"id": f"ord_src{n}", "listingId": LISTING, "killAt": kill})
        for n, kill in enumerate(["during", "after"] * 4)
    ]
    ids = [e["id"] for e in events]
    killed = set()
    with contextlib.ExitStack() as stack:
        workers = {}

        def start():
            process = stack.enter_context(worker(env, tmp_path / f"worker{len(workers)}.log"))
            workers[process.pid] = process

        for _ in range(3):
            start()
        submit(redis_conn, redis_url, events)

        def all_placed():
            for event_id, pid in redis_conn.hgetall(PID_KEY).items():
                if event_id not in killed and int(pid) in workers:
                    killed.add(event_id)
                    os.killpg(int(pid), signal.SIGKILL)
                    workers.pop(int(pid)).wait()
                    start()  # as a supervisor would
            runs = redis_conn.hgetall(RUNS_KEY)
            placed = {line.split()[0] for line in redis_conn.lrange(ORDERS_KEY, 0, -1)}
            return (
                len(killed) == len(events)
                and placed == {i.encode() for i in ids}
                and all(int(runs[i.encode()]) == 2 for i in ids)
            )

        wait_for(all_placed, timeout=60, interval=0.05)

    placed: dict[str, set] = {}
    for line in redis_conn.lrange(ORDERS_KEY, 0, -1):
        event_id, order_id = line.decode().split()
        placed.setdefault(event_id, set()).add(order_id)
    assert set(placed) == set(ids)
    assert all(len(orders) == 1 for orders in placed.values())  # a re-run got the same order
    assert len(set().union(*placed.values())) == len(events)
    stats = sandbox.stats()
    assert stats["orders"] == len(events)  # one order per event, never two
    print(f"\nkill -9 mid-order: trials={len(events)} orders={stats['orders']} stats={stats}")


def test_workers_share_one_rate_budget(start_sandbox, redis_url, redis_conn, tmp_path):
    limit, count = 15, 45
    sandbox = start_sandbox(rate_limit=limit)
    env = api_env(redis_url, sandbox)
    events = [make_event("price.updated", {"listingId": LISTING}) for _ in range(count)]
    with contextlib.ExitStack() as stack:
        for n in range(3):
            stack.enter_context(worker(env, tmp_path / f"worker{n}.log"))
        submit(redis_conn, redis_url, events)
        wait_for(lambda: int(redis_conn.hget(CALLS_KEY, "ok") or 0) >= count, timeout=60)
    calls = {k.decode(): int(v) for k, v in redis_conn.hgetall(CALLS_KEY).items()}
    stats = sandbox.stats()
    assert calls == {"ok": count}  # no handler saw an error
    # Zero 429s: the budget holds every worker back before the server has to.
    assert "429" not in stats["byStatus"], stats
    assert stats["byStatus"] == {"200": count + 1}  # and one token for the three workers
    # A lower bound on throughput: the calls used at least half of what the limit allowed
    # in the windows from the first to the last (a budget at one call a second: 0.07).
    windows = [int(w) for w in redis_conn.lrange(WINDOWS_KEY, 0, -1)]
    share = count / ((max(windows) - min(windows) + 1) * limit)
    print(f"\nshared budget: {count} calls in {max(windows) - min(windows) + 1} windows of {limit}")
    assert share >= 0.5, windows
