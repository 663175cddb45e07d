"""Replication figures: what `TW_REDIS_ACK_REPLICAS=1` costs, against a local replica.

    python benchmarks/replication.py                        # bake the defaults first
    python benchmarks/replication.py --project DIR --runs 5 --seconds 10

A private primary and a replica (`redis-server --replicaof`, persistence off on both)
are started for the run. In one run, alternating so that drift of the machine hits both
alike:

- ingest: the receiver under the project's `gunicorn.conf.py`, with
  `TW_REDIS_ACK_REPLICAS=1` and with `0`, loaded by the same generator (`ingest.py`,
  `loadgen.py`); the figure is the median of the runs' ratios (target >= 0.8);
- drain: the project's `worker --burst` with one no-op handler on events queued by the
  intake, with the worker's waits (`1`) and without (`0`), timed from the jobs' own
  start and end stamps (`drain.py`) (target >= 0.8).

The replica is on this machine, so each WAIT costs a loopback round trip and the
replica's apply time; across a network add one round trip (RTT) per acknowledgement
and per worker record (see the generated project's docs/performance.md). Nothing here
is part of `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common
import drain
import ingest
import loadgen
from common import machine


@contextlib.contextmanager
def replicated_redis(package: str, scratch: Path):
    """A primary and one replica in sync; yields the primary's URL."""
    embedded = importlib.import_module(f"{package}.dev.embedded_redis")
    import redis

    server = embedded.find_redis_server()
    ports = [embedded.free_port(), embedded.free_port()]
    processes = []
    try:
        for port, follow in zip(ports, [None, ports[0]], strict=True):
            command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", str(scratch)]  # fmt: skip
            if follow:
                command += ["--replicaof", "127.0.0.1", str(follow)]
            log = open(scratch / f"redis-{port}.log", "wb")  # noqa: SIM115
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        replica = redis.Redis(port=ports[1])
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(redis.RedisError):
                if replica.info("replication").get("master_link_status") == "up":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not sync")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def measure_ingest(args, project, redis_url, conn) -> list[float]:
    use_wrk = loadgen.have_wrk() and not args.python_loadgen
    template = ingest.sample_event(project)
    url_path = common.webhook_path(args.package)
    app = f"{args.package}.app:create_app()"
    ratios = []
    for run in range(args.runs):
        rps = {}
        for replicas in ("0", "1"):
            conn.flushall()
            requests = loadgen.signed_requests(
                template, ingest.SECRET, int(args.seconds * args.max_rate)
            )
            env = {"TW_REDIS_ACK_REPLICAS": replicas, "TW_LOG_LEVEL": "WARNING"}
            with ingest.gunicorn(project, app, args.port, redis_url, env) as (base, _):
                warm = loadgen.signed_requests(template, ingest.SECRET, 2000)
                ingest.load(base + url_path, warm, 1, args.connections, use_wrk)
                result = ingest.load(
                    base + url_path, requests, args.seconds, args.connections, use_wrk
                )
            rps[replicas] = result.rps
            print(
                f"  run {run + 1} ingest ACK_REPLICAS={replicas} {result.rps:8.0f} req/s"
                f"  p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms"
                f"  errors {result.errors}",
                flush=True,
            )
        ratios.append(rps["1"] / rps["0"])
    return ratios


def measure_drain(args, project, redis_url, conn) -> list[float]:
    ratios = []
    for run in range(args.runs):
        rates = {}
        for replicas in ("0", "1"):
            conn.flushall()
            ids = drain.queue_events(conn, args.package, args.jobs)
            env = common.project_env(
                project, args.package, redis_url, TW_REDIS_ACK_REPLICAS=replicas
            )
            command = [sys.executable, "-m", args.package, "worker", "--burst"]
            subprocess.run(command, env=env, check=True, cwd=project)
            rates[replicas] = drain.jobs_per_second(conn, ids)
            print(f"  run {run + 1} drain ACK_REPLICAS={replicas} {rates[replicas]:8.0f} events/s")
        ratios.append(rates["1"] / rates["0"])
    return ratios


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.project_options(parser)
    common.load_options(parser, seconds=8)
    common.port_option(parser)
    parser.add_argument("--jobs", type=int, default=2000, help="events per drain run")
    parser.add_argument("--only", choices=["ingest", "drain"], action="append")
    args = parser.parse_args(argv)
    only = set(args.only or ["ingest", "drain"])
    with common.project(args) as (project, scratch):
        import redis

        with replicated_redis(args.package, scratch) as url:
            conn = redis.Redis.from_url(url)
            print(f"project {project.name}, Redis {conn.info('server')['redis_version']}, "
                  f"one local replica; {machine()}", flush=True)  # fmt: skip
            figures = {}
            if "ingest" in only:
                figures["ingest ACK_REPLICAS=1 ÷ 0 (target >= 0.8)"] = measure_ingest(
                    args, project, url, conn
                )
            if "drain" in only:
                figures["drain with waits ÷ without (target >= 0.8)"] = measure_drain(
                    args, project, url, conn
                )
        for name, ratios in figures.items():
            shown = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"{name}: {statistics.median(ratios):.2f}  (runs: {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
