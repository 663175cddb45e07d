"""Measure the generated project against the limits of its own stack; print a table.

    python benchmarks/run.py                  # bake the defaults into a temp dir, measure
    python benchmarks/run.py --project DIR    # measure an existing bake (default options)
    python benchmarks/run.py --quick          # shorter runs, for a first look

Everything runs on this machine against a private redis-server started for the purpose
(the one the project's `dev/embedded_redis.py` finds), never against a Redis you already run.
Load comes from wrk when it is on PATH, else from the Python generator in loadgen.py.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parent
sys.path.insert(0, str(HERE))

import drain
import ingest
import loadgen
import memory


def bake(output_dir: Path) -> Path:
    from cookiecutter.main import cookiecutter

    return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output_dir)))


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return {
        "cores": str(
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "cpu": model,
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
    }


def median(values):
    return statistics.median(values)


def run_ratio(results: dict, top: str, bottom: str) -> float:
    """The median of each run's `top` ÷ `bottom`. Each run's ratio is taken between
    neighbours in time, so drift of a shared machine between runs cancels out."""
    pairs = zip(results[top], results[bottom], strict=True)
    return median([t.rps / b.rps for t, b in pairs])


# Each run serves these one after another under the same load: name -> (app, environment).
# The receiver runs with its per-delivery log line on at INFO, in both formats.
APPS = {
    "bare": ("bare_app:create_app()", {}),
    "receiver": ("{package}.app:create_app()", {"TW_LOG_FORMAT": "text"}),
    "receiver_json": ("{package}.app:create_app()", {"TW_LOG_FORMAT": "json"}),
    "ceiling": ("bare_redis_app:create_app()", {}),
    "minimum": ("minimal_app:create_app()", {}),
}


def measure_ingest(args, project, redis_url, conn, report):
    use_wrk = loadgen.have_wrk() and not args.python_loadgen
    report["load generator"] = "wrk" if use_wrk else "python (loadgen.py)"
    template = ingest.sample_event(project)
    per_run = int(args.seconds * args.max_rate)
    results = {name: [] for name in APPS}
    web_cpu = {name: [] for name in APPS}  # µs of the web processes' CPU per request
    port = 18000 + (int(time.time()) % 1000)
    apps = {name: app.format(package=args.package) for name, (app, _) in APPS.items()}
    url_path = ingest_path(args.package, project)
    for run in range(args.runs):
        for name in APPS:
            conn.flushall()
            requests = loadgen.signed_requests(template, ingest.SECRET, per_run)
            env = {"BENCH_PACKAGE": args.package, **APPS[name][1]}
            with ingest.gunicorn(project, apps[name], port, redis_url, env) as (base, group):
                warm = loadgen.signed_requests(template, ingest.SECRET, 2000)
                ingest.load(base + url_path, warm, 1, args.connections, use_wrk)
                queued_before = queued(conn)
                cpu_before = ingest.cpu_seconds(group)
                result = ingest.load(
                    base + url_path, requests, args.seconds, args.connections, use_wrk
                )
                cpu_after = ingest.cpu_seconds(group)
            if cpu_before is not None and result.requests:
                web_cpu[name].append((cpu_after - cpu_before) / result.requests * 1e6)
            if (
                name in ("receiver", "receiver_json", "minimum")
                and queued(conn) - queued_before < result.requests * 0.99
            ):
                print(
                    f"  warning: {name} queued {queued(conn) - queued_before} of {result.requests}"
                )
            results[name].append(result)
            cpu = f"  web CPU {web_cpu[name][-1]:.0f} µs/req" if web_cpu[name] else ""
            print(
                f"  run {run + 1} {name:8s} {result.rps:8.0f} req/s  p50 {result.p50_ms:.2f} ms"
                f"  p99 {result.p99_ms:.2f} ms  errors {result.errors}{cpu}",
                flush=True,
            )
    report.update(results)
    if all(web_cpu.values()):
        report["web_cpu"] = {name: median(values) for name, values in web_cpu.items()}
    for name, runs in results.items():
        report[f"{name}_rps"] = median([r.rps for r in runs])
    report["ingest_ratio"] = run_ratio(results, "receiver", "bare")
    report["ceiling_ratio"] = run_ratio(results, "ceiling", "bare")
    report["minimum_ratio"] = run_ratio(results, "minimum", "bare")
    report["of_minimum"] = run_ratio(results, "receiver", "minimum")
    report["json_of_minimum"] = run_ratio(results, "receiver_json", "minimum")
    report["minimum_of_ceiling"] = run_ratio(results, "minimum", "ceiling")
    report["of_ceiling"] = run_ratio(results, "receiver", "ceiling")
    recv = report["receiver_rps"]

    # Latency at half the receiver's peak.
    rate = recv / 2
    lat = []
    for _ in range(max(1, args.runs // 2 + 1)):
        conn.flushall()
        requests = loadgen.signed_requests(
            template, ingest.SECRET, int(args.seconds * rate * 1.5) + 100
        )
        with ingest.gunicorn(project, apps["receiver"], port, redis_url, {}) as (base, _):
            warm = loadgen.signed_requests(template, ingest.SECRET, 2000)
            ingest.load(base + url_path, warm, 1, args.connections, use_wrk)
            mean_ms = median([r.p50_ms for r in results["receiver"]])
            result = ingest.load(
                base + url_path, requests, args.seconds, args.connections, use_wrk,
                rate=rate, mean_latency_ms=mean_ms / 2,
            )  # fmt: skip
        print(
            f"  half-peak target {rate:.0f} req/s: got {result.rps:.0f} req/s"
            f"  p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms",
            flush=True,
        )
        lat.append(result)
    report["half_rate"] = median([r.rps for r in lat])
    report["half_p50"] = median([r.p50_ms for r in lat])
    report["half_p99"] = median([r.p99_ms for r in lat])


def queued(conn) -> int:
    return sum(conn.llen(f"rq:queue:{q}") for q in ("orders", "prices", "other"))


def ingest_path(package, project):
    config = importlib.import_module(f"{package}.config")
    return config.DEFAULT_WEBHOOK_PATH


def measure_drain(args, project, redis_url, conn, report):
    n, n_fork = args.jobs, max(100, args.jobs // 10)
    rows = {"worker": [], "simple": [], "fork": [], "spawn": []}
    for run in range(args.runs):
        conn.flushall()
        rows["simple"].append(
            drain.drain_rq_worker(
                project, args.package, redis_url, conn, n, "rq.worker.SimpleWorker", plain=True
            )
        )
        conn.flushall()
        rows["worker"].append(drain.drain_project_worker(project, args.package, redis_url, conn, n))
        conn.flushall()
        rows["fork"].append(
            drain.drain_rq_worker(
                project, args.package, redis_url, conn, n_fork, "rq.worker.Worker", plain=False
            )
        )
        if run == 0:
            conn.flushall()
            rows["spawn"].append(
                drain.drain_rq_worker(
                    project,
                    args.package,
                    redis_url,
                    conn,
                    max(50, n_fork // 4),
                    "rq.worker.SpawnWorker",
                    plain=False,
                )
            )
        print(
            "  run {}: worker {:.0f}/s  plain SimpleWorker {:.0f}/s  forking Worker {:.0f}/s".format(
                run + 1, rows["worker"][-1], rows["simple"][-1], rows["fork"][-1]),
            flush=True,
        )  # fmt: skip
    for key, values in rows.items():
        report[f"drain_{key}"] = median(values)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, help="a default bake (default: bake one now)")
    parser.add_argument("--package", default="tw_webhook_receiver")
    parser.add_argument("--seconds", type=float, default=10, help="length of each load run")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median is kept)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=3000, help="events per drain run")
    parser.add_argument("--max-rate", type=float, default=8000,
                        help="signed requests prepared per second of load")  # fmt: skip
    parser.add_argument("--memory-events", type=int, default=100_000)
    parser.add_argument("--python-loadgen", action="store_true", help="ignore wrk")
    parser.add_argument("--only", choices=["ingest", "drain", "memory"], action="append")
    parser.add_argument("--quick", action="store_true", help="1 run of 5 s, 1000 jobs, 20k ids")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.runs, args.jobs, args.memory_events = 5, 1, 1000, 20_000
    only = set(args.only or ["ingest", "drain", "memory"])

    with tempfile.TemporaryDirectory(prefix="tw-bench-") as scratch:
        project = args.project.resolve() if args.project else bake(Path(scratch))
        ingest.LOG_DIR = Path(scratch)  # the servers' logs go with the scratch directory
        sys.path.insert(0, str(project / "src"))
        embedded = importlib.import_module(f"{args.package}.dev.embedded_redis")
        import redis

        with embedded.EmbeddedRedis() as server:
            conn = redis.Redis.from_url(server.url)
            report: dict = dict(machine())
            report["redis"] = conn.info("server")["redis_version"]
            print(f"project {project.name}, Redis {report['redis']} at {server.url}", flush=True)
            if "ingest" in only:
                measure_ingest(args, project, server.url, conn, report)
            if "drain" in only:
                measure_drain(args, project, server.url, conn, report)
            if "memory" in only:
                per_id, _left = memory.bytes_per_event_id(
                    server.url, args.package, args.memory_events
                )
                report["memory_per_id"] = per_id
            print_table(report, args)
    return 0


def print_table(r: dict, args) -> None:
    print()
    print(
        f"machine: {r['cores']} cores, {r['cpu']}, Python {r['python']}, Redis {r['redis']}, {r['os']}"
    )
    rows = []
    if "ingest_ratio" in r:
        rows += [
            ("ingest: receiver / contract minimum (req/s), log line at INFO",
             f"{r['receiver_rps']:.0f} / {r['minimum_rps']:.0f}, ratio {r['of_minimum']:.2f}",
             ">= 0.9", r["of_minimum"] >= 0.9),
            ("  the same with TW_LOG_FORMAT=json",
             f"{r['receiver_json_rps']:.0f} / {r['minimum_rps']:.0f}, ratio {r['json_of_minimum']:.2f}",
             ">= 0.9", r["json_of_minimum"] >= 0.9),
            ("  receiver / bare Flask", f"ratio {r['ingest_ratio']:.2f}", "", None),
            ("  ceiling: bare Flask + one Redis PING / bare",
             f"{r['ceiling_rps']:.0f} / {r['bare_rps']:.0f}, ratio {r['ceiling_ratio']:.2f}",
             "", None),
            ("  receiver / ceiling", f"ratio {r['of_ceiling']:.2f}", "", None),
            ("  contract minimum (verify, parse, intake script) / bare",
             f"{r['minimum_rps']:.0f} / {r['bare_rps']:.0f}, ratio {r['minimum_ratio']:.2f}",
             "", None),
            ("  contract minimum / ceiling", f"ratio {r['minimum_of_ceiling']:.2f}", "", None),
            *([("  web processes' CPU per request: receiver / json / minimum / ceiling / bare",
                "{receiver:.0f} / {receiver_json:.0f} / {minimum:.0f} / {ceiling:.0f} / {bare:.0f} µs"
                .format(**r["web_cpu"]), "", None)] if "web_cpu" in r else []),
            ("  bare Flask p50 / p99 at peak",
             "{:.2f} / {:.2f} ms".format(median([x.p50_ms for x in r["bare"]]),
                                         median([x.p99_ms for x in r["bare"]])), "", None),
            ("  receiver p50 / p99 at peak",
             "{:.2f} / {:.2f} ms".format(median([x.p50_ms for x in r["receiver"]]),
                                         median([x.p99_ms for x in r["receiver"]])), "", None),
            (f"p99 ack latency at half peak ({r['half_rate']:.0f} req/s)",
             f"{r['half_p99']:.2f} ms (p50 {r['half_p50']:.2f})", "< 10 ms", r["half_p99"] < 10),
        ]  # fmt: skip
    if "drain_worker" in r:
        w, s, f = r["drain_worker"], r["drain_simple"], r["drain_fork"]
        rows += [
            ("drain: worker command / plain SimpleWorker (events/s)",
             f"{w:.0f} / {s:.0f} = {w / s:.2f}", ">= 0.9", w / s >= 0.9),
            ("drain: worker command / forking Worker (events/s)",
             f"{w:.0f} / {f:.0f} = {w / f:.1f}", ">= 3", w / f >= 3),
            ("  SpawnWorker on the same events (events/s)", f"{r['drain_spawn']:.0f}", "", None),
        ]  # fmt: skip
    if "memory_per_id" in r:
        rows.append((f"Redis memory per remembered event id ({args.memory_events} ids)",
                     f"{r['memory_per_id']:.1f} bytes", "<= 100", r["memory_per_id"] <= 100))  # fmt: skip
    width = max(len(row[0]) for row in rows)
    vwidth = max(len(row[1]) for row in rows)
    print(f"load generator: {r.get('load generator', '-')}, {args.connections} connections, "
          f"{args.seconds:g} s per run, median of {args.runs} runs (ratios: median of each "
          "run's ratio)")  # fmt: skip
    print(f"| {'figure':{width}} | {'measured':{vwidth}} | target | ok |")
    print(f"|{'-' * (width + 2)}|{'-' * (vwidth + 2)}|--------|----|")
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("yes" if ok else "NO")
        print(f"| {name:{width}} | {value:{vwidth}} | {target:6} | {mark:2} |")


if __name__ == "__main__":
    sys.exit(main())
