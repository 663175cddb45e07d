"""The price of the project's gunicorn worker: the receiver under its `BufferingWorker`
(a request is served only once all of it has come, so slow clients hold no thread)
against the same receiver under gunicorn's plain `gthread`, which the worker extends.

One worker process and one keep-alive connection sending signed deliveries back to back,
so that the figure is the CPU each request costs the web processes (`/proc`), not how a
busy machine shares its cores; runs alternate, in turn order, and the figure is the median
of the runs' ratios.

    python benchmarks/web_worker.py --project build/tw-webhook-receiver --runs 6
"""

from __future__ import annotations

import argparse
import http.client
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
WARM = 500


def cost_per_request(base: str, path: str, requests) -> float:
    """Send `requests` one after the other on one connection; seconds per request."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    started = time.perf_counter()
    for signature, body in requests:
        headers = {"TW-Signature": signature, "Content-Type": "application/json"}
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 202:
            raise RuntimeError(f"the receiver answered {response.status}")
    connection.close()
    return (time.perf_counter() - started) / len(requests)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, help="a default bake (default: bake one now)")
    parser.add_argument("--package", default="tw_webhook_receiver")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--requests", type=int, default=3000, help="per run")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tw-bench-") as scratch:
        project = args.project.resolve() if args.project else bake(Path(scratch))
        ingest.LOG_DIR = Path(scratch)
        sys.path.insert(0, str(project / "src"))
        embedded = importlib.import_module(f"{args.package}.dev.embedded_redis")
        import redis

        template = ingest.sample_event(project)
        app = f"{args.package}.app:create_app()"
        path = ingest_path(args.package, project)
        port = 19000 + (int(time.time()) % 1000)
        cpu = {name: [] for name in WORKERS}
        wall = {name: [] for name in WORKERS}
        with embedded.EmbeddedRedis() as server:
            conn = redis.Redis.from_url(server.url)
            for run in range(args.runs):
                order = list(WORKERS) if run % 2 == 0 else list(reversed(WORKERS))
                for name in order:
                    conn.flushall()
                    requests = loadgen.signed_requests(
                        template, ingest.SECRET, WARM + args.requests
                    )
                    env = {
                        "GUNICORN_WORKER_CLASS": WORKERS[name].format(package=args.package),
                        "WEB_CONCURRENCY": "1",
                    }
                    with ingest.gunicorn(project, app, port, server.url, env) as (base, group):
                        cost_per_request(base, path, requests[:WARM])
                        before = ingest.cpu_seconds(group)
                        wall[name].append(cost_per_request(base, path, requests[WARM:]) * 1e6)
                        used = ingest.cpu_seconds(group) - before
                    cpu[name].append(used / args.requests * 1e6)
                    print(
                        f"  run {run + 1} {name:16s} web CPU {cpu[name][-1]:.0f} µs/req"
                        f"  answered in {wall[name][-1]:.0f} µs",
                        flush=True,
                    )

    def ratio(figures):
        top, bottom = figures["BufferingWorker"], figures["gthread"]
        ratios = [a / b for a, b in zip(top, bottom, strict=True)]
        return f"{statistics.median(ratios):.3f} (runs: {', '.join(f'{r:.2f}' for r in ratios)})"

    info = machine()
    print(f"\nmachine: {info['cores']} cores, {info['cpu']}, Python {info['python']}")
    print(f"web CPU per request, BufferingWorker / gthread: {ratio(cpu)}")
    print(f"time to answer, BufferingWorker / gthread: {ratio(wall)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
