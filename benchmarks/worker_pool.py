"""Worker processes figures: events/s of `worker --processes N` with a handler that waits.

    python benchmarks/worker_pool.py                       # bake the defaults, N = 1 2 4 8 16
    python benchmarks/worker_pool.py --project DIR --processes 1 4 --rq-pool --wait sleep

Each handler run waits 50 ms (`--wait-ms`) on the network: by default it calls the
project's API sandbox, started here with `--latency-ms` (`sandbox_handlers.py`: one
`GET /v1/health` per event, the token fetched once per process); with `--wait sleep`, a
`time.sleep` stands in for the call (`sleep_handlers.py`). For each contender the workers
are started first and the clock runs only once every process has registered with Redis;
then events are queued through the project's own intake, and throughput is taken from the
jobs' own start and end stamps (`drain.jobs_per_second`). Every row is compared with one single-process `worker`.
`--rq-pool` adds RQ's own `WorkerPool` running the project's `Worker` class, the
alternative the command's supervisor was measured against. A private redis-server is
started for the run, as in `run.py`; nothing here is part of `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import common
import drain
from common import HERE, machine, redis_cpu, tree_cpu


def drain_with(command, project, package, redis_url, conn, processes, events, wait, api):
    """Start `command`, wait for `processes` workers, drain `events`.

    Returns events/s, start-up seconds, and the CPU milliseconds per event that the
    workers, Redis and the API sandbox (`api`: its URL and pid, or None) spent draining.
    """
    conn.flushdb()
    handlers = "sandbox_handlers" if api else "sleep_handlers"
    env = common.project_env(project, package, redis_url, TW_HANDLER_MODULES=handlers)
    env.update(BENCH_HANDLER_SLEEP_MS=f"{wait:g}", BENCH_API_URL=api[0] if api else "")
    launched = time.monotonic()
    with common.workers(command, env, project, conn, processes) as pid:
        startup = time.monotonic() - launched
        cpu_before, redis_before = tree_cpu(pid), redis_cpu(conn)
        api_before = tree_cpu(api[1]) if api else 0.0
        ids = drain.queue_events(conn, package, events)
        common.wait_until_finished(conn, ids, 60 + events * wait / 1000)
        worker_ms = (tree_cpu(pid) - cpu_before) * 1000 / events
        redis_ms = (redis_cpu(conn) - redis_before) * 1000 / events
        api_ms = ((tree_cpu(api[1]) if api else 0.0) - api_before) * 1000 / events
        return drain.jobs_per_second(conn, ids), startup, worker_ms, redis_ms, api_ms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.project_options(parser)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--wait", choices=["sandbox", "sleep"], default="sandbox",
                        help="how a handler waits: an API sandbox call, or time.sleep")  # fmt: skip
    parser.add_argument("--wait-ms", type=float, default=50, help="each handler run's wait")
    parser.add_argument("--seconds", type=float, default=4, help="ideal drain time per run")
    parser.add_argument("--runs", type=int, default=1, help="runs per figure (median kept)")
    parser.add_argument("--rq-pool", action="store_true", help="also RQ's WorkerPool")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        project, _scratch = stack.enter_context(common.project(args))
        url, conn = stack.enter_context(common.private_redis(args.package))
        api = None
        if args.wait == "sandbox":
            env = common.project_env(project, args.package, "redis://unused")
            latency = ("--latency-ms", f"{args.wait_ms:g}", "--rate-limit", "1000000")
            api = stack.enter_context(common.api_sandbox(project, args.package, env, *latency))
        info = machine()
        how = f"an API sandbox call (--latency-ms {args.wait_ms:g})" if api else "time.sleep"
        print(
            f"machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}; "
            f"each handler run waits {args.wait_ms:g} ms on {how}",
            flush=True,
        )
        worker = [sys.executable, "-m", args.package, "worker"]
        contenders = [("worker (one process)", 1, worker)]
        for n in args.processes:
            contenders.append((f"worker --processes {n}", n, [*worker, "--processes", str(n)]))
            if args.rq_pool:
                pool = [sys.executable, str(HERE / "rq_pool.py"), str(n)]
                contenders.append((f"rq WorkerPool({n})", n, pool))
        rows = []
        for name, n, command in contenders:
            events = max(50, int(args.seconds * 1000 / args.wait_ms * n))
            results = [
                drain_with(command, project, args.package, url, conn, n, events, args.wait_ms, api)
                for _ in range(args.runs)
            ]
            medians = (statistics.median(r[i] for r in results) for i in range(5))
            rows.append((name, n, events, *medians))
            print(f"  {name:<26} {rows[-1][3]:7.1f} events/s  ({events} events)", flush=True)

    single = rows[0][3]
    print()
    print(
        f"{'contender':<26} {'events':>6} {'events/s':>9} {'x single':>9} {'of ideal':>9} "
        f"{'start-up':>9} {'CPU ms/event: workers':>22} {'Redis':>6} {'API':>6}"
    )
    for name, n, events, rate, startup, worker_ms, redis_ms, api_ms in rows:
        ideal = n * 1000 / args.wait_ms
        print(
            f"{name:<26} {events:>6} {rate:>9.1f} {rate / single:>9.2f} {rate / ideal:>8.0%} "
            f"{startup:>8.1f}s {worker_ms:>22.1f} {redis_ms:>6.1f} {api_ms:>6.1f}"
        )
    cpu_ms = statistics.median(row[5] + row[6] + row[7] for row in rows)
    cores = int(info["cores"])
    print(
        f"\nideal: N x {1000 / args.wait_ms:g} events/s. CPU per event (workers, Redis and the "
        f"API, median) {cpu_ms:.1f} ms, so {cores} cores carry at most about "
        f"{cores * 1000 / cpu_ms:.0f} events/s however many processes wait; "
        f"load average now {os.getloadavg()[0]:.1f}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
