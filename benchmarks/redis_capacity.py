"""How much one Redis can take: Redis CPU per accepted, duplicate and handled event, and
from it the events per second one Redis primary sustains.

    python benchmarks/redis_capacity.py                  # bake the defaults, measure
    python benchmarks/redis_capacity.py --project DIR    # measure an existing bake
    python benchmarks/redis_capacity.py --runs 1 --events 2000    # a quick look

Redis runs commands on one thread, so that thread's CPU is what runs out first. The figure
per event is the growth of Redis' own CPU counters (`INFO cpu`, its main thread) across N
events, less what the idle server spends in the same time: through the real receiver under
gunicorn (wrk or loadgen.py as the sender, a new event id per request), the same requests
again (all duplicates, as the sender's retries are), and the project's real `worker` command
draining the accepted events through one no-op handler. `INFO commandstats` adds the time
Redis spent inside the commands alone; the rest of the CPU is reading requests and writing
replies. Everything runs against a private redis-server started for the purpose.

The machine's other load inflates every figure: use a quiet machine and several runs (the
median is printed).
"""

from __future__ import annotations

import argparse
import importlib
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
    """Redis' CPU (main thread, seconds), time inside commands (µs) and wall time (s)."""

    cpu: float
    command_us: float
    wall: float

    @classmethod
    def read(cls, conn) -> Usage:
        cpu = conn.info("cpu")
        # Redis 6+ reports its main thread apart from I/O and background threads.
        user = cpu.get("used_cpu_user_main_thread", cpu["used_cpu_user"])
        system = cpu.get("used_cpu_sys_main_thread", cpu["used_cpu_sys"])
        stats = conn.info("commandstats")
        usec = sum(entry["usec"] for entry in stats.values())
        return cls(float(user) + float(system), float(usec), time.monotonic())

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.cpu - other.cpu,
            self.command_us - other.command_us,
            self.wall - other.wall,
        )


@dataclass(frozen=True)
class PerEvent:
    cpu_us: float  # Redis main-thread CPU per event, idle spending taken out
    command_us: float  # of which inside commands
    events: int


def per_event(used: Usage, idle_cpu_per_s: float, events: int) -> PerEvent:
    busy = max(used.cpu - idle_cpu_per_s * used.wall, 0.0)
    return PerEvent(busy * 1e6 / events, used.command_us / events, events)


def idle_rate(conn, seconds: float = 3.0) -> float:
    """CPU seconds per second the idle server spends (its timers)."""
    before = Usage.read(conn)
    time.sleep(seconds)
    used = Usage.read(conn) - before
    return used.cpu / used.wall


def queued(conn) -> int:
    return sum(conn.llen(f"rq:queue:{queue}") for queue in QUEUES)


def measure_run(args, project: Path, redis_url: str, conn) -> dict[str, PerEvent]:
    conn.flushall()
    use_wrk = loadgen.have_wrk() and not args.python_loadgen
    template = ingest.sample_event(project)
    path = importlib.import_module(f"{args.package}.config").DEFAULT_WEBHOOK_PATH
    requests = loadgen.signed_requests(
        template, ingest.SECRET, int(args.seconds * args.max_rate)
    )
    idle = idle_rate(conn)
    result = {}
    with ingest.gunicorn(
        project, f"{args.package}.app:create_app()", args.port, redis_url, {}
    ) as base:
        warm = loadgen.signed_requests(template, ingest.SECRET, 500)
        ingest.load(base + path, warm, 1, args.connections, use_wrk)
        conn.flushall()  # the warm-up's events are not counted, nor drained
        before = Usage.read(conn)
        load = ingest.load(
            base + path, requests, args.seconds, args.connections, use_wrk
        )
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
    # Drain --events of them with the project's worker (one process, no-op handler); the
    # rest leave their queue unhandled.
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
    subprocess.run(
        command,
        env=drain._env(project, args.package, redis_url),
        check=True,
        cwd=project,
    )
    if queued(conn):
        raise RuntimeError(f"{queued(conn)} events left undrained")
    result["handled"] = per_event(Usage.read(conn) - before, idle, to_handle)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--project", type=Path, help="a default bake (default: bake one now)"
    )
    parser.add_argument("--package", default="tw_webhook_receiver")
    parser.add_argument("--runs", type=int, default=3, help="runs (the median is kept)")
    parser.add_argument(
        "--seconds", type=float, default=5, help="length of each load run"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-rate", type=float, default=8000,
                        help="signed requests prepared per second of load")  # fmt: skip
    parser.add_argument(
        "--events", type=int, default=3000, help="events drained per run"
    )
    parser.add_argument("--port", type=int, default=18000 + int(time.time()) % 1000)
    parser.add_argument("--python-loadgen", action="store_true", help="ignore wrk")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tw-capacity-") as scratch:
        project = args.project.resolve() if args.project else bake(Path(scratch))
        ingest.LOG_DIR = Path(scratch)
        sys.path.insert(0, str(project / "src"))
        embedded = importlib.import_module(f"{args.package}.embedded_redis")
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
                    f"{kind} {figure.cpu_us:.1f} µs ({figure.events})"
                    for kind, figure in runs[-1].items()
                ), flush=True)  # fmt: skip
    print_table(runs)
    return 0


def print_table(runs: list[dict[str, PerEvent]]) -> None:
    def median(kind: str, field: str) -> float:
        return statistics.median(getattr(run[kind], field) for run in runs)

    print()
    print("| per event | Redis CPU (main thread) | of which inside commands |")
    print("|---|---|---|")
    for kind in ("accepted", "duplicate", "handled"):
        print(
            f"| {kind} | {median(kind, 'cpu_us'):.1f} µs | {median(kind, 'command_us'):.1f} µs |"
        )
    per_event_us = median("accepted", "cpu_us") + median("handled", "cpu_us")
    print(f"| accepted + handled | {per_event_us:.1f} µs | "
          f"{median('accepted', 'command_us') + median('handled', 'command_us'):.1f} µs |")  # fmt: skip
    print()
    print(f"One Redis primary, one core: about {1e6 / per_event_us:,.0f} events/s "
          f"received and handled with the core fully busy, {PLANNING_SHARE * 1e6 / per_event_us:,.0f} "
          f"events/s at {PLANNING_SHARE:.0%} of it (median of {len(runs)} run(s)).")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
