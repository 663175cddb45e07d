"""The workers' periodic reconciliation (`TW_RECONCILE_INTERVAL_SECONDS`), in real worker
processes against the sandbox over real HTTP: lost webhooks are found within two
intervals, one pass runs at a time across the workers, and the API's rate limit, shared
with the handlers, never reaches a handler as a 429."""

import itertools
import sys
import time

import reconcile_handlers as seen
from processes import PACKAGE, gunicorn, project_env, running, wait_for
from test_reconcile import DELIVERED, place_in_store, place_orders, start_lost

from {{ cookiecutter.package_name }} import ledger, reconcile


def worker_env(redis_url, api, interval, **extra):
    return project_env(
        redis_url, TW_HANDLER_MODULES="reconcile_handlers", TW_API_BASE_URL=api.url,
        TW_API_CLIENT_ID=api.client_id, TW_API_CLIENT_SECRET=api.client_secret,
        TW_RECONCILE_INTERVAL_SECONDS=str(interval), **extra,
    )  # fmt: skip


def workers(env, log, processes=2):
    command = [sys.executable, "-m", PACKAGE, "worker", "--processes", str(processes)]
    return running(command, env, log)


def test_lost_webhooks_are_found_within_two_intervals(
    start_sandbox, redis_url, redis_conn, tmp_path
):
    interval, settle = 3, 1
    receiver_env = project_env(redis_url)
    with gunicorn(receiver_env, tmp_path / "web.log") as base:
        api = start_sandbox(webhook_url=base + "{{ cookiecutter.webhook_path }}", webhook_loss=0.3, seed=3)
        env = worker_env(
            redis_url, api, interval, TW_RECONCILE_SETTLE_SECONDS=str(settle),
            TW_RECONCILE_OVERLAP_SECONDS="10",
        )  # fmt: skip
        with workers(env, tmp_path / "worker.log"):
            wait_for(lambda: reconcile.last_runs(redis_conn), timeout=30)  # the first pass
            finals = place_orders(api, 18, pause=0.15)  # a steady stream
            stream_ended = time.monotonic()
            assert api.webhooks.counts()["lost"] > 0

            def ledger_matches_the_api() -> bool:
                entries = ledger.read(redis_conn, finals)
                return all(
                    order in entries and entries[order].status == status
                    for order, status in finals.items()
                )

            # The last change settles, the next pass finds it, a worker runs its handlers.
            wait_for(ledger_matches_the_api, timeout=2 * interval + settle + 2)
            assert time.monotonic() - stream_ended < 2 * interval + settle + 2
    runs = seen.runs(redis_conn)
    assert set(runs.values()) == {1}  # no transition's handler ran twice
    assert {f"{o}:{s}" for o, s in finals.items()} <= seen.saw(redis_conn)  # final states
    assert seen.synthetic(redis_conn)  # some arrived only through reconciliation


def test_one_pass_at_a_time_across_workers(start_sandbox, redis_url, redis_conn, tmp_path):
    # Every API request takes 1.2 s, so a pass outlasts the 1 s interval.
    api = start_lost(start_sandbox, latency_ms=1200)
    finals = place_in_store(api, 6)
    reconcile.save_watermark(redis_conn, (int(time.time()) - 600, ""))  # it ran before
    log = tmp_path / "workers.log"
    with workers(worker_env(redis_url, api, 1, TW_RECONCILE_SETTLE_SECONDS="0"), log):
        wait_for(lambda: len(reconcile.last_runs(redis_conn, 10)) >= 4, timeout=60)
    passes = sorted(reconcile.last_runs(redis_conn, 50), key=lambda run: run["started"])
    for earlier, later in itertools.pairwise(passes):
        assert earlier["finished"] <= later["started"]  # never two at once
    text = log.read_text()
    assert text.count("reconciliation with the API every 1 s") == 2  # both workers try
    assert "the previous pass still runs" in text
    expected = {f"{o}:{s}": 1 for o, final in finals.items() for s in DELIVERED[final]}
    assert seen.runs(redis_conn) == expected


def test_no_429_reaches_a_handler(start_sandbox, redis_url, redis_conn, tmp_path):
    # 5 requests/s for the project's client, spent by the pass and by every handler.
    api = start_lost(start_sandbox, rate_limit=5)
    finals = place_in_store(api, 12)
    reconcile.save_watermark(redis_conn, (int(time.time()) - 600, ""))
    env = worker_env(redis_url, api, 1, TW_RECONCILE_SETTLE_SECONDS="0", TEST_CALL_API="1")
    expected = {f"{o}:{s}": 1 for o, final in finals.items() for s in DELIVERED[final]}
    with workers(env, tmp_path / "workers.log"):
        wait_for(lambda: seen.runs(redis_conn) == expected, timeout=90)
    assert redis_conn.lrange(seen.API_ERRORS_KEY, 0, -1) == []  # every call succeeded
    print("sandbox answers:", api.stats()["byStatus"])
