"""Lanes figures: what running every handler in a lane per order costs the workers.

    python benchmarks/lanes.py                        # bake the defaults, 4 processes
    python benchmarks/lanes.py --project DIR --processes 4 --events 2000 --runs 3

The same no-op handler drains the same events twice per run, with `@on("*")`
(`noop_handlers.py`) and with `@on("*", lane="order")` (`noop_lane_handlers.py`), under
one `worker --processes N`, in alternating order. Events are queued through the project's
own intake, shuffled, once the workers are up; throughput is taken from the jobs' own start
and end stamps (`drain.jobs_per_second`). Two spreads of the same number of events: over
200 distinct orders (lanes rarely meet: the cost of joining and releasing a lane), and
over a few hot orders (`--hot`, 10 by default, several counts for several rows: events of
one order queue up behind each other, and the drain is bounded by how fast one lane hands
over to its next event). A
private redis-server is started for the run, as in `run.py`; nothing here is part of
`make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import drain
from run import bake, machine
from worker_pool import _unfinished, redis_cpu, tree_cpu, workers_registered

TRANSITIONS = ("order.created", "order.confirmed", "order.fulfilled", "order.cancelled")


def queue_order_events(conn, package: str, orders: int, events: int) -> list[str]:
    """Queue `events` order events spread over `orders` orders, shuffled, through the
    project's own intake."""
    config = importlib.import_module(f"{package}.config")
    intake_mod = importlib.import_module(f"{package}.intake")
    testing = importlib.import_module(f"{package}.testing")
    intake = intake_mod.Intake(conn, config.Settings(secrets=("bench",)))
    envelopes = [
        testing.make_event(TRANSITIONS[n % 4], {"id": f"ord_{n % orders}"}) for n in range(events)
    ]
    random.Random(events).shuffle(envelopes)
    for envelope in envelopes:
        intake.submit(envelope)
    return [envelope["id"] for envelope in envelopes]


def drain_with(project, package, redis_url, conn, processes, handlers, orders, events):
    """Start `worker --processes N` with `handlers`, queue the events, wait for them.
    Returns events/s and the CPU ms per event of the workers and of Redis."""
    conn.flushdb()
    env = drain._env(project, package, redis_url, TW_HANDLER_MODULES=handlers)
    command = [sys.executable, "-m", package, "worker", "--processes", str(processes)]
    process = subprocess.Popen(command, env=env, cwd=project, start_new_session=True)
    try:
        while workers_registered(conn) < processes:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited with {process.returncode}")
            time.sleep(0.05)
        cpu_before, redis_before = tree_cpu(process.pid), redis_cpu(conn)
        ids = queue_order_events(conn, package, orders, events)
        deadline = time.monotonic() + 120
        while _unfinished(conn, ids):
            if time.monotonic() > deadline:
                raise RuntimeError("the events were not drained in time")
            time.sleep(0.1)
        worker_ms = (tree_cpu(process.pid) - cpu_before) * 1000 / events
        redis_ms = (redis_cpu(conn) - redis_before) * 1000 / events
        return drain.jobs_per_second(conn, ids), worker_ms, redis_ms
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, help="a default bake (default: bake one now)")
    parser.add_argument("--package", default="tw_webhook_receiver")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--events", type=int, default=1500, help="events per drain")
    parser.add_argument("--orders", type=int, default=200, help="distinct orders (spread)")
    parser.add_argument(
        "--hot", type=int, nargs="+", default=[10], help="distinct orders (hot), one row each"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median kept)")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="tw-bench-"))
        project = args.project.resolve() if args.project else bake(Path(scratch))
        sys.path.insert(0, str(project / "src"))
        embedded = importlib.import_module(f"{args.package}.dev.embedded_redis")
        import redis

        server = stack.enter_context(embedded.EmbeddedRedis())
        conn = redis.Redis.from_url(server.url)
        info = machine()
        print(
            f"machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}; "
            f"worker --processes {args.processes}, {args.events} events per drain, "
            f"a no-op handler",
            flush=True,
        )
        rows = []
        for label, orders in [("spread", args.orders), *(("hot", n) for n in args.hot)]:
            results: dict[str, list] = {"no lane": [], "lane": []}
            for run in range(args.runs):
                pairs = [("no lane", "noop_handlers"), ("lane", "noop_lane_handlers")]
                for name, handlers in pairs if run % 2 == 0 else pairs[::-1]:
                    drained = drain_with(
                        project, args.package, server.url, conn, args.processes,
                        handlers, orders, args.events,
                    )  # fmt: skip
                    results[name].append(drained)
            ratios = [
                lane[0] / plain[0]
                for lane, plain in zip(results["lane"], results["no lane"], strict=True)
            ]
            for name in ("no lane", "lane"):
                medians = [statistics.median(r[i] for r in results[name]) for i in range(3)]
                rows.append((f"{label}: {orders} orders, {name}", *medians))
                print(f"  {rows[-1][0]:<34} {medians[0]:8.1f} events/s", flush=True)
            label = f"{label} ({orders})"
            rows.append((f"{label}: lane ÷ no lane (median of runs)", statistics.median(ratios)))
            cpu = [
                (plain[1] + plain[2]) / (lane[1] + lane[2])
                for lane, plain in zip(results["lane"], results["no lane"], strict=True)
            ]
            rows.append((f"{label}: CPU per event, no lane ÷ lane", statistics.median(cpu)))

    print()
    print(f"{'drain':<44} {'events/s':>9} {'CPU ms/event: workers':>22} {'Redis':>6}")
    for row in rows:
        if len(row) == 2:
            print(f"{row[0]:<44} {row[1]:>9.2f}")
        else:
            print(f"{row[0]:<44} {row[1]:>9.1f} {row[2]:>22.2f} {row[3]:>6.2f}")
    print(f"\nload average now {os.getloadavg()[0]:.1f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
