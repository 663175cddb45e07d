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
import importlib
import os
import signal
import socket
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


def workers_registered(conn) -> int:
    return conn.scard("rq:workers")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and every process below it (Linux)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue  # gone meanwhile
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo.extend(map(int, children))
    return total


def redis_cpu(conn) -> float:
    info = conn.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


@contextlib.contextmanager
def api_sandbox(project: Path, package: str, latency_ms: float, port: int):
    """The project's API sandbox on `port`, adding `latency_ms` to every request."""
    command = [
        sys.executable, "-m", package, "sandbox", "--port", str(port),
        "--latency-ms", f"{latency_ms:g}", "--rate-limit", "1000000",
    ]  # fmt: skip
    env = drain._env(project, package, "redis://unused")
    process = subprocess.Popen(
        command,
        env=env,
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API sandbox did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def drain_with(command, project, package, redis_url, conn, processes, events, wait, api):
    """Start `command`, wait for `processes` workers, drain `events`.

    Returns events/s, start-up seconds, and the CPU milliseconds per event that the
    workers, Redis and the API sandbox (`api`: its URL and pid, or None) spent draining.
    """
    conn.flushdb()
    handlers = "sandbox_handlers" if api else "sleep_handlers"
    env = drain._env(project, package, redis_url, TW_HANDLER_MODULES=handlers)
    env.update(BENCH_HANDLER_SLEEP_MS=f"{wait:g}", BENCH_API_URL=api[0] if api else "")
    launched = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=project, start_new_session=True)
    try:
        while workers_registered(conn) < processes:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited with {process.returncode}")
            time.sleep(0.05)
        startup = time.monotonic() - launched
        cpu_before, redis_before = tree_cpu(process.pid), redis_cpu(conn)
        api_before = tree_cpu(api[1]) if api else 0.0
        ids = drain.queue_events(conn, package, events)
        deadline = time.monotonic() + 60 + events * wait / 1000
        while _unfinished(conn, ids):
            if time.monotonic() > deadline:
                raise RuntimeError("the events were not drained in time")
            time.sleep(0.1)
        worker_ms = (tree_cpu(process.pid) - cpu_before) * 1000 / events
        redis_ms = (redis_cpu(conn) - redis_before) * 1000 / events
        api_ms = ((tree_cpu(api[1]) if api else 0.0) - api_before) * 1000 / events
        return drain.jobs_per_second(conn, ids), startup, worker_ms, redis_ms, api_ms
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def _unfinished(conn, ids) -> bool:
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(f"rq:job:{job_id}", "status")
    return any(status != b"finished" for status in pipe.execute())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, help="a default bake (default: bake one now)")
    parser.add_argument("--package", default="tw_webhook_receiver")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--wait", choices=["sandbox", "sleep"], default="sandbox",
                        help="how a handler waits: an API sandbox call, or time.sleep")  # fmt: skip
    parser.add_argument("--wait-ms", type=float, default=50, help="each handler run's wait")
    parser.add_argument("--seconds", type=float, default=4, help="ideal drain time per run")
    parser.add_argument("--runs", type=int, default=1, help="runs per figure (median kept)")
    parser.add_argument("--rq-pool", action="store_true", help="also RQ's WorkerPool")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="tw-bench-"))
        project = args.project.resolve() if args.project else bake(Path(scratch))
        sys.path.insert(0, str(project / "src"))
        embedded = importlib.import_module(f"{args.package}.dev.embedded_redis")
        import redis

        server = stack.enter_context(embedded.EmbeddedRedis())
        conn = redis.Redis.from_url(server.url)
        api = None
        if args.wait == "sandbox":
            api = stack.enter_context(
                api_sandbox(project, args.package, args.wait_ms, embedded.free_port())
            )
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
                drain_with(
                    command, project, args.package, server.url, conn, n, events, args.wait_ms, api
                )
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
