"""How much one Redis can take: Redis CPU per accepted, duplicate and handled event, and
from it the events per second one Redis primary sustains.

    python benchmarks/redis_capacity.py                  # bake the defaults, measure
    python benchmarks/redis_capacity.py --project DIR    # measure an existing bake
    python benchmarks/redis_capacity.py --runs 1 --events 500    # a quick look

Redis runs commands on one thread, so that thread's CPU is what runs out first. The figure
per event is the growth of Redis' own CPU counters (`INFO cpu`, its main thread) across N
events, less what the idle server spends in the same time: through the real receiver under
gunicorn (wrk or loadgen.py as the sender, a new event id per request), the same requests
again (all duplicates, as the sender's retries are), and the project's real `worker` command
(four processes by default) draining the accepted events through one no-op handler.
`INFO commandstats` counts the commands (a script's own included). The same is measured
for a plain `PING` round trip from four clients: an event's cost in PINGs carries over to
other machines better than its microseconds. Everything runs against a private
redis-server started for the purpose.

The machine's other load inflates every figure: use a quiet machine and several runs (the
median is printed).
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import drain
import ingest
import loadgen
from run import bake, machine

QUEUES = ("orders", "prices", "other")
# A core's worth of Redis main thread is never all yours: background saves (fork), replicas,
# expiry and bursts need room. Capacity is also given at this share of it.
PLANNING_SHARE = 0.6


@dataclass(frozen=True)
class Usage:
    """Redis' CPU (main thread, seconds), commands run (those a script runs too, not the
    measurement's own INFO) and wall time (s)."""

    cpu: float
    commands: int
    wall: float

    @classmethod
    def read(cls, conn) -> Usage:
        cpu = conn.info("cpu")
        # Redis 6+ reports its main thread apart from I/O and background threads.
        user = cpu.get("used_cpu_user_main_thread", cpu["used_cpu_user"])
        system = cpu.get("used_cpu_sys_main_thread", cpu["used_cpu_sys"])
        stats = conn.info("commandstats")
        stats.pop("cmdstat_info", None)
        calls = sum(entry["calls"] for entry in stats.values())
        return cls(float(user) + float(system), calls, time.monotonic())

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.cpu - other.cpu,
            self.commands - other.commands,
            self.wall - other.wall,
        )


@dataclass(frozen=True)
class PerEvent:
    cpu_us: float  # Redis main-thread CPU per event, idle spending taken out
    commands: float  # Redis commands per event
    events: int


def per_event(used: Usage, idle_cpu_per_s: float, events: int) -> PerEvent:
    busy = max(used.cpu - idle_cpu_per_s * used.wall, 0.0)
    return PerEvent(busy * 1e6 / events, used.commands / events, events)


def idle_rate(conn, seconds: float = 3.0) -> float:
    """CPU seconds per second the idle server spends (its timers)."""
    before = Usage.read(conn)
    time.sleep(seconds)
    used = Usage.read(conn) - before
    return used.cpu / used.wall


def _pings(redis_url: str, count: int) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for _ in range(count):
        client.ping()


def ping_cost(redis_url: str, conn, idle: float, clients: int = 4, count: int = 3000) -> PerEvent:
    """Redis CPU per `PING` round trip from `clients` processes: the unit that makes the
    figures comparable across machines (an event costs so many PINGs)."""
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        before = Usage.read(conn)
        pool.starmap(_pings, [(redis_url, count)] * clients)
        used = Usage.read(conn) - before
    return per_event(used, idle, clients * count)


def queued(conn) -> int:
    return sum(conn.llen(f"rq:queue:{queue}") for queue in QUEUES)


def measure_run(args, project: Path, redis_url: str, conn) -> dict[str, PerEvent]:
    conn.flushall()
    use_wrk = loadgen.have_wrk() and not args.python_loadgen
    template = ingest.sample_event(project)
    path = importlib.import_module(f"{args.package}.config").DEFAULT_WEBHOOK_PATH
    requests = loadgen.signed_requests(template, ingest.SECRET, int(args.seconds * args.max_rate))
    idle = idle_rate(conn)
    result = {"ping": ping_cost(redis_url, conn, idle)}
    with ingest.gunicorn(project, f"{args.package}.app:create_app()", args.port, redis_url, {}) as (
        base,
        _group,
    ):
        warm = loadgen.signed_requests(template, ingest.SECRET, 500)
        ingest.load(base + path, warm, 1, args.connections, use_wrk)
        conn.flushall()  # the warm-up's events are not counted, nor drained
        before = Usage.read(conn)
        load = ingest.load(base + path, requests, args.seconds, args.connections, use_wrk)
        accepted = queued(conn)
        result["accepted"] = per_event(Usage.read(conn) - before, idle, accepted)
        if load.requests > accepted * 1.01:
            print(
                f"  note: {load.requests} requests sent, {accepted} accepted",
                flush=True,
            )
        # The same requests again: every one a duplicate, as the sender's retries are.
        before = Usage.read(conn)
        again = ingest.load(base + path, requests[:accepted], args.seconds, args.connections,
                            use_wrk)  # fmt: skip
        result["duplicate"] = per_event(Usage.read(conn) - before, idle, again.requests)
    # Drain --events of them with the project's worker (--workers processes, one no-op
    # handler); the rest leave their queue unhandled.
    budget = args.events
    for queue in QUEUES:
        key = f"rq:queue:{queue}"
        keep = min(conn.llen(key), budget)
        if keep:
            conn.ltrim(key, 0, keep - 1)
        else:
            conn.delete(key)
        budget -= keep
    to_handle = queued(conn)
    before = Usage.read(conn)
    command = [sys.executable, "-m", args.package, "worker", "--burst"]
    env = drain._env(project, args.package, redis_url)
    workers = [subprocess.Popen(command, env=env, cwd=project) for _ in range(args.workers)]
    exit_codes = [worker.wait() for worker in workers]  # wait for every one
    if any(exit_codes):
        raise RuntimeError(f"a worker failed: exit codes {exit_codes}")
    if queued(conn):
        raise RuntimeError(f"{queued(conn)} events left undrained")
    result["handled"] = per_event(Usage.read(conn) - before, idle, to_handle)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, help="a default bake (default: bake one now)")
    parser.add_argument("--package", default="tw_webhook_receiver")
    parser.add_argument("--runs", type=int, default=3, help="runs (the median is kept)")
    parser.add_argument("--seconds", type=float, default=5, help="length of each load run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-rate", type=float, default=8000,
                        help="signed requests prepared per second of load")  # fmt: skip
    parser.add_argument("--events", type=int, default=3000, help="events drained per run")
    parser.add_argument("--workers", type=int, default=4, help="worker processes draining")
    parser.add_argument("--port", type=int, default=18000 + int(time.time()) % 1000)
    parser.add_argument("--python-loadgen", action="store_true", help="ignore wrk")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tw-capacity-") as scratch:
        project = args.project.resolve() if args.project else bake(Path(scratch))
        ingest.LOG_DIR = Path(scratch)
        sys.path.insert(0, str(project / "src"))
        embedded = importlib.import_module(f"{args.package}.dev.embedded_redis")
        import redis

        with embedded.EmbeddedRedis() as server:
            conn = redis.Redis.from_url(server.url)
            version = conn.info("server")["redis_version"]
            info = machine()
            print(f"Redis {version}; {info['cores']} cores, {info['cpu']}; Python "
                  f"{info['python']}", flush=True)  # fmt: skip
            runs = []
            for run in range(args.runs):
                runs.append(measure_run(args, project, server.url, conn))
                print(f"  run {run + 1}: " + ", ".join(
                    f"{kind} {figure.cpu_us:.1f} µs {figure.commands:.1f} commands ({figure.events})"
                    for kind, figure in runs[-1].items()
                ), flush=True)  # fmt: skip
    print_table(runs)
    return 0


def print_table(runs: list[dict[str, PerEvent]]) -> None:
    def median(kind: str, field: str) -> float:
        return statistics.median(getattr(run[kind], field) for run in runs)

    ping = median("ping", "cpu_us")

    def row(kind: str, commands: float, cpu_us: float) -> None:
        print(f"| {kind} | {commands:.1f} | {cpu_us:.1f} µs | {cpu_us / ping:.1f} |")

    print()
    print("| per event | Redis commands | Redis CPU (main thread) | in PING round trips |")
    print("|---|---|---|---|")
    for kind in ("ping", "accepted", "duplicate", "handled"):
        row(kind, median(kind, "commands"), median(kind, "cpu_us"))
    commands = median("accepted", "commands") + median("handled", "commands")
    cpu_us = median("accepted", "cpu_us") + median("handled", "cpu_us")
    row("accepted + handled", commands, cpu_us)
    print()
    print(f"One Redis primary, one core: about {1e6 / cpu_us:,.0f} events/s received and handled "
          f"with its main thread fully busy, {PLANNING_SHARE * 1e6 / cpu_us:,.0f} events/s at "
          f"{PLANNING_SHARE:.0%} of it (median of {len(runs)} run(s)).")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
