"""API client figures, against the project's own API sandbox (run as its `sandbox` command).

1. Overhead: sequential `GET /v1/health` calls through the project's `Client` (token,
   shared rate budget in Redis, retry bookkeeping) against the same calls through a bare
   `httpx.Client` holding the same token. Rounds alternate between the two and the median
   round of each is kept; the target is an overhead within 10 %.
2. Settle paths: the budget runs what it learns from an answer (`settle`, and `start` for
   a request near its window's end) as one EVALSHA whose reply it waits for. The same
   calls with those scripts sent without waiting for the reply (read later, with the next
   reply waited for; `SendingRunner` below, what the budget once did), in two cases: as
   shipped, and the worst case for waiting, where every call is tracked (a `start` and a
   `settle` each). The time spent in the budget per call, waiting less not waiting, as a
   share of a call (and whole calls, waiting ÷ not waiting), alternating rounds, medians:
   sending without waiting would earn its keep (and its use of redis-py's connection
   internals) only where that share is above 10 %.
3. Budget use: the sandbox limited to L requests/s, 3 `worker` processes draining events
   whose handler makes one API call each. Events handled per second / L (target >= 0.9),
   taken from the jobs' own start and end stamps, and the 429s the sandbox answered
   (target 0: the shared budget holds the workers back before the server has to).

Run from the template's root with its virtualenv:
    .venv/bin/python benchmarks/api_client.py [--project PATH] [--limit 50] [--events 500]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import common
import drain  # same folder: throughput from the jobs' own stamps
import hiredis
import httpx
import redis

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"


def stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/_sandbox/stats", timeout=2) as response:
        return json.loads(response.read())


def measure_overhead(package: str, url: str, conn: redis.Redis, calls: int, rounds: int):
    """Median microseconds per call, of wall time and of CPU time (this process plus Redis):
    {"client": (wall, cpu), "httpx": (wall, cpu)}."""
    client_mod = importlib.import_module(f"{package}.api.client")
    client = client_mod.Client(url, CLIENT_ID, CLIENT_SECRET, conn)
    client.health()  # the token, and a warm connection
    token = client.http.auth._local.value
    bare = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
    bare.get("/v1/health").raise_for_status()

    def redis_cpu() -> float:
        info = conn.info("cpu")
        return info["used_cpu_user"] + info["used_cpu_sys"]

    def timed(call) -> tuple[float, float]:
        wall, cpu, server = time.perf_counter(), time.process_time(), redis_cpu()
        for _ in range(calls):
            call()
        cpu = time.process_time() - cpu + redis_cpu() - server
        return (time.perf_counter() - wall) / calls * 1e6, cpu / calls * 1e6

    figures: dict[str, list] = {"client": [], "httpx": []}
    for _ in range(rounds):
        figures["httpx"].append(timed(lambda: bare.get("/v1/health").raise_for_status()))
        figures["client"].append(timed(client.health))
    client.close()
    bare.close()
    return {
        name: tuple(statistics.median(run[i] for run in runs) for i in (0, 1))
        for name, runs in figures.items()
    }


def measure_settle_paths(package: str, url: str, conn: redis.Redis, calls: int, rounds: int):
    """Median microseconds per call, of the whole call and of the time spent in the budget
    (`take` and `settle`), with the budget's scripts sent without waiting and waited for,
    as shipped and with every call tracked: {(case, path): (call, budget)}."""
    budget_mod = importlib.import_module(f"{package}.api.budget")
    client_mod = importlib.import_module(f"{package}.api.client")
    clients, spent = {}, {}
    for path in ("sent", "waited"):
        client = client_mod.Client(url, CLIENT_ID, CLIENT_SECRET, conn)
        client.health()  # the token, and a warm connection
        if path == "sent":
            client.budget._runner = sending_runner(package, conn, client.budget._take.sha)
        spent[path] = [0.0]
        for name in ("take", "settle"):
            setattr(client.budget, name, _timed(getattr(client.budget, name), spent[path]))
        clients[path] = client
    shipped = budget_mod.STRADDLE_SECONDS
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for _ in range(rounds):
            for case, straddle in (("shipped", shipped), ("tracked", 3600.0)):
                # A lease whose window ends within `straddle` tracks each of its requests.
                budget_mod.STRADDLE_SECONDS = straddle
                for path, client in clients.items():
                    spent[path][0] = 0.0
                    started = time.perf_counter()
                    for _ in range(calls):
                        client.health()
                    wall = (time.perf_counter() - started) / calls * 1e6
                    figures.setdefault((case, path), []).append(
                        (wall, spent[path][0] / calls * 1e6)
                    )
    finally:
        budget_mod.STRADDLE_SECONDS = shipped
        for client in clients.values():
            client.close()
    return {
        key: tuple(statistics.median(run[i] for run in runs) for i in (0, 1))
        for key, runs in figures.items()
    }


def sending_runner(package: str, conn: redis.Redis, waited_sha: str):
    """The project's `ScriptRunner`, sending every script but `waited_sha` (the budget's
    `take`) without waiting for its reply; the replies are read when there, or before the
    next reply waited for."""
    runner_class = importlib.import_module(f"{package}.connection").ScriptRunner

    class SendingRunner(runner_class):
        def run(self, script, keys, args):
            connection = self._connection()
            unanswered = self.__dict__.setdefault("unanswered", [])
            if script.sha != waited_sha:
                connection.connect()
                command = hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
                connection.send_packed_command([command], check_health=False)
                unanswered.append(script)
                while unanswered and connection.can_read(timeout=0):
                    unanswered.pop(0)
                    connection.read_response()
                return None
            while unanswered:
                unanswered.pop(0)
                connection.read_response()
            return super().run(script, keys, args)

    for script in ("START", "SETTLE"):  # loaded, so that a reply never goes unread as an error
        conn.script_load(getattr(importlib.import_module(f"{package}.api.budget"), script))
    return SendingRunner(conn)


def _timed(method, total: list[float]):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - started

    return timed


def measure_budget(project: Path, package: str, env: dict, conn, url: str, events: int):
    """Events per second through 3 workers whose handler makes one call each."""
    config = importlib.import_module(f"{package}.config")
    intake_mod = importlib.import_module(f"{package}.intake")
    testing = importlib.import_module(f"{package}.testing")
    intake = intake_mod.Intake(conn, config.Settings(secrets=("bench",)))
    ids = []
    for _ in range(events):
        event = testing.make_event("price.updated", {"listingId": "lst_7Qm2Floor"})
        intake.submit(event)
        ids.append(event["id"])
    worker_env = {
        **env,
        "TW_API_BASE_URL": url,
        "TW_HANDLER_MODULES": "api_call_handlers",
    }
    command = [sys.executable, "-m", package, "worker", "--burst"]
    workers = [subprocess.Popen(command, cwd=project, env=worker_env) for _ in range(3)]
    for process in workers:
        process.wait()
    return drain.jobs_per_second(conn, ids)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.project_options(parser)
    parser.add_argument("--calls", type=int, default=300, help="calls per overhead round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--limit", type=int, default=50, help="sandbox requests/s (budget)")
    parser.add_argument("--events", type=int, default=500, help="events for the budget run")
    args = parser.parse_args(argv)

    unlimited = ("--rate-limit", "1000000")
    with (
        common.project(args, prefix="tw-bench-api-") as (project, _scratch),
        common.private_redis(args.package) as (redis_url, conn),
    ):
        env = common.project_env(
            project, args.package, redis_url,
            TW_API_CLIENT_ID=CLIENT_ID, TW_API_CLIENT_SECRET=CLIENT_SECRET,
        )  # fmt: skip

        with common.api_sandbox(project, args.package, env, *unlimited) as (url, _pid):
            figures = measure_overhead(args.package, url, conn, args.calls, args.rounds)
        (wall, cpu), (bare_wall, bare_cpu) = figures["client"], figures["httpx"]
        print(f"overhead: client {wall:.0f} us/call, bare httpx {bare_wall:.0f} us/call: "
              f"{(wall / bare_wall - 1) * 100:+.1f} % of wall time (target within 10 %); "
              f"CPU of the caller and Redis {cpu:.0f} against {bare_cpu:.0f} us/call "
              f"({(cpu / bare_cpu - 1) * 100:+.1f} %); {args.rounds} rounds of {args.calls} "
              "GET /v1/health, medians")  # fmt: skip

        conn.flushdb()
        with common.api_sandbox(project, args.package, env, *unlimited) as (url, _pid):
            paths = measure_settle_paths(args.package, url, conn, args.calls, args.rounds)
        for case in ("shipped", "tracked"):
            (sent, sent_budget), (waited, waited_budget) = (
                paths[(case, "sent")],
                paths[(case, "waited")],
            )
            print(f"settle paths, {case}: {sent:.0f} us/call ({sent_budget:.0f} in the budget) "
                  f"with its scripts sent without waiting, {waited:.0f} ({waited_budget:.0f}) "
                  f"waiting for each reply: waiting costs the budget "
                  f"{(waited_budget - sent_budget) / sent * 100:+.1f} % of a call "
                  f"(whole calls {waited / sent:.3f}); {args.rounds} rounds of {args.calls} "
                  "GET /v1/health, medians")  # fmt: skip

        conn.flushdb()
        limited = ("--rate-limit", str(args.limit))
        with common.api_sandbox(project, args.package, env, *limited) as (url, _pid):
            rate = measure_budget(project, args.package, env, conn, url, args.events)
            counted = stats(url)
        refused = counted["byStatus"].get("429", 0)
        print(f"budget: {rate:.1f} events/s with the sandbox at {args.limit} requests/s "
              f"and 3 workers: {rate / args.limit:.2f} of the limit (target >= 0.9); "
              f"429s answered: {refused} (target 0); sandbox: {counted['byStatus']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
