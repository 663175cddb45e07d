"""Reconciliation figures, against the project's own API sandbox over real HTTP.

N orders sit in the sandbox (placed straight in its store, so no webhook reaches anyone)
and a watermark says the receiver ran before they were placed. Two passes of the real
reconciler (`reconcile.run_once`, with the project's API client, its shared rate budget
and a private redis-server) follow:

1. every order missed: the pass walks the orders and feeds each missing transition to the
   intake (queued, no worker runs them);
2. the ledger as a worker would have left it (the queued events recorded, not handled):
   the pass walks the same orders and finds nothing.

Printed: orders checked per second and API calls per pass (counted by the sandbox).

Run from the template's root with its virtualenv:
    .venv/bin/python benchmarks/reconcile.py [--project PATH] [--orders 5000]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

import common

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"


def place(store, count: int) -> None:
    """`count` orders of one seat each, moved along like a day's business."""
    listings = [x["listingId"] for x in store.search("12345", None, 100, None)[0]]
    journeys = [(), ("confirm",), ("confirm", "fulfill"), ("cancel",)]
    for number in range(count):
        order = store.create_order(CLIENT_ID, [(listings[number % len(listings)], 1)])
        for action in journeys[number % len(journeys)]:
            store.transition(CLIENT_ID, order["id"], action)
        if number % 500 == 499:  # give the seats back, or the show sells out
            for listing in store._listings:
                listing.available = 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a baked project (default: bake one)")
    parser.add_argument("--orders", type=int, default=5000)
    args = parser.parse_args()
    with common.project(args) as (project, _scratch):
        name = common.package_of(project)
        embedded = importlib.import_module(f"{name}.dev.embedded_redis")
        sandbox = importlib.import_module(f"{name}.sandbox")
        reconcile = importlib.import_module(f"{name}.reconcile")
        ledger = importlib.import_module(f"{name}.ledger")
        jobs_events = importlib.import_module(f"{name}.events")
        config = importlib.import_module(f"{name}.config")
        with (
            embedded.EmbeddedRedis() as server,
            sandbox.running(
                client_id=CLIENT_ID, client_secret=CLIENT_SECRET, rate_limit=100
            ) as api,
        ):
            import redis

            connection = redis.Redis.from_url(server.url)
            settings = dataclasses.replace(
                config.Settings(), redis_url=server.url, api_base_url=api.url,
                api_client_id=CLIENT_ID, api_client_secret=CLIENT_SECRET,
                reconcile_settle_seconds=0, max_queue_depth=0,
            )  # fmt: skip
            reconcile.save_watermark(connection, (int(time.time()) - 60, ""))
            place(api.store, args.orders)
            print(f"{args.orders} orders in the sandbox (rate limit 100 requests/s, pages of 100)")
            for label in ("every order missed", "nothing missed"):
                before = api.stats()["requests"]
                report = reconcile.run_once(settings)
                calls = api.stats()["requests"] - before
                seconds = report.finished - report.started
                print(
                    f"  {label}: {report.checked} orders checked in {seconds:.2f} s "
                    f"({report.checked / seconds:,.0f}/s), {calls} API requests "
                    f"({report.api_calls} pages{', the token' if calls > report.api_calls else ''}), "
                    f"{len(report.events)} events fed"
                )
                for event_id in report.events:  # what a worker's job start would record
                    job = connection.hget(f"rq:job:{event_id}", "data")
                    envelope = json.loads(job)[2][0]
                    ledger.record(connection, jobs_events.Event.from_dict(envelope), 3600)
            print(f"  sandbox answers: {api.stats()['byStatus']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
