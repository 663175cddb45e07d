"""The price of the project's gunicorn worker: the receiver under its `BufferingWorker`
(each request read by the worker's main loop before a thread takes it, so slow clients
hold no thread) against the same receiver under gunicorn's plain `gthread`, which the
worker extends. Same `gunicorn.conf.py` otherwise, same load, runs alternating, so the
drift of a shared machine hits both alike; the figure is the median of the runs' ratios.

    python benchmarks/web_worker.py --project build/tw-webhook-receiver --runs 5
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ingest
import loadgen
from run import bake, ingest_path, machine

WORKERS = {
    "BufferingWorker": "{package}.http_worker.BufferingWorker",
    "gthread": "gthread",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, help="a default bake (default: bake one now)")
    parser.add_argument("--package", default="tw_webhook_receiver")
    parser.add_argument("--seconds", type=float, default=10, help="length of each load run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--python-loadgen", action="store_true", help="ignore wrk")
    args = parser.parse_args(argv)
    use_wrk = loadgen.have_wrk() and not args.python_loadgen

    with tempfile.TemporaryDirectory(prefix="tw-bench-") as scratch:
        project = args.project.resolve() if args.project else bake(Path(scratch))
        ingest.LOG_DIR = Path(scratch)
        sys.path.insert(0, str(project / "src"))
        embedded = importlib.import_module(f"{args.package}.embedded_redis")
        import redis

        template = ingest.sample_event(project)
        app = f"{args.package}.app:create_app()"
        url_path = ingest_path(args.package, project)
        port = 19000 + (int(time.time()) % 1000)
        rps = {name: [] for name in WORKERS}
        cpu = {name: [] for name in WORKERS}
        with embedded.EmbeddedRedis() as server:
            conn = redis.Redis.from_url(server.url)
            for run in range(args.runs):
                for name, worker_class in WORKERS.items():
                    conn.flushall()
                    env = {"GUNICORN_WORKER_CLASS": worker_class.format(package=args.package)}
                    requests = loadgen.signed_requests(template, ingest.SECRET, 80_000)
                    with ingest.gunicorn(project, app, port, server.url, env) as (base, group):
                        warm = loadgen.signed_requests(template, ingest.SECRET, 2000)
                        ingest.load(base + url_path, warm, 1, args.connections, use_wrk)
                        before = ingest.cpu_seconds(group)
                        result = ingest.load(
                            base + url_path, requests, args.seconds, args.connections, use_wrk
                        )
                        after = ingest.cpu_seconds(group)
                    rps[name].append(result.rps)
                    cpu[name].append((after - before) / max(result.requests, 1) * 1e6)
                    print(
                        f"  run {run + 1} {name:16s} {result.rps:7.0f} req/s"
                        f"  p99 {result.p99_ms:.2f} ms  errors {result.errors}"
                        f"  web CPU {cpu[name][-1]:.0f} µs/req",
                        flush=True,
                    )

    def ratio(figures):
        top, bottom = figures["BufferingWorker"], figures["gthread"]
        return statistics.median(a / b for a, b in zip(top, bottom, strict=True))

    info = machine()
    print(f"\nmachine: {info['cores']} cores, {info['cpu']}, Python {info['python']}")
    print(f"load generator: {'wrk' if use_wrk else 'python (loadgen.py)'}, {args.seconds:g} s runs")
    print(f"receiver req/s, BufferingWorker / gthread: {ratio(rps):.3f} (median of runs)")
    print(f"web CPU per request, BufferingWorker / gthread: {ratio(cpu):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
