"""What every benchmark sets up the same way, so that each script holds only its measurement.

- the project: a fresh default bake in a scratch directory, or `--project`; its package
  made importable, and the servers' logs sent to the scratch directory (`project`);
- a private redis-server, the one the project's `embedded_redis` finds (`private_redis`),
  never a Redis you already run;
- the environment the project's processes get: the benchmark's own handlers, never the
  bake's (`project_env`);
- the project's own intake, as the receiver builds it (`intake`), and what the queues hold
  (`queued`);
- workers started and stopped as a process group, counted once registered, and the CPU
  they and Redis spend (`workers`, `tree_cpu`, `redis_cpu`, `wait_until_finished`);
- the shared command-line options and the machine's description for the printout.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parent
QUEUES = ("orders", "prices", "other")
if str(HERE) not in sys.path:  # the scripts import each other by module name
    sys.path.insert(0, str(HERE))


# --- options ------------------------------------------------------------------------------


def project_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", type=Path, help="a default bake (default: bake one now)")
    parser.add_argument("--package", default="tw_webhook_receiver")


def load_options(parser: argparse.ArgumentParser, seconds: float, runs: int = 3) -> None:
    """The options of a benchmark that loads the receiver over HTTP (`ingest.load`)."""
    parser.add_argument("--seconds", type=float, default=seconds, help="length of each load run")
    parser.add_argument("--runs", type=int, default=runs, help="runs per figure (median is kept)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-rate", type=float, default=8000,
                        help="signed requests prepared per second of load")  # fmt: skip
    parser.add_argument("--python-loadgen", action="store_true", help="ignore wrk")


def port_option(parser: argparse.ArgumentParser) -> None:
    """`--port` for the receiver: one that earlier runs are unlikely to hold still."""
    parser.add_argument("--port", type=int, default=18000 + int(time.time()) % 1000)


# --- the project --------------------------------------------------------------------------


def bake(output_dir: Path) -> Path:
    from cookiecutter.main import cookiecutter

    return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output_dir)))


def package_of(project: Path) -> str:
    return json.loads((project / ".cookiecutter.json").read_text())["package_name"]


@contextlib.contextmanager
def project(args: argparse.Namespace, prefix: str = "tw-bench-") -> Iterator[tuple[Path, Path]]:
    """Yield (project, scratch): `args.project` or a default bake in the scratch directory,
    its package importable; the servers `ingest.gunicorn` starts log to the scratch."""
    import ingest

    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        scratch = Path(name)
        found = args.project.resolve() if args.project else bake(scratch)
        ingest.LOG_DIR = scratch
        sys.path.insert(0, str(found / "src"))
        yield found, scratch


@contextlib.contextmanager
def private_redis(package: str) -> Iterator[tuple[str, object]]:
    """Yield (url, client) of a redis-server started for the run, stopped after it."""
    import redis

    embedded = importlib.import_module(f"{package}.dev.embedded_redis")
    with embedded.EmbeddedRedis() as server:
        yield server.url, redis.Redis.from_url(server.url)


def free_port(package: str) -> int:
    return importlib.import_module(f"{package}.dev.embedded_redis").free_port()


def project_env(project: Path, package: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of the project's processes: no `TW_` setting of this shell, the
    benchmark's no-op handler only (never the bake's own `handlers` package), quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TW_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(project / "src"), str(HERE)]),
        REDIS_URL=redis_url,
        BENCH_PACKAGE=package,
        TW_HANDLERS_PACKAGE="",
        TW_HANDLER_MODULES="noop_handlers",
        TW_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def api_sandbox(project: Path, package: str, env: dict, *options: str) -> Iterator[tuple[str, int]]:
    """The project's `sandbox` command (the API from memory) on a free port, with `options`
    (`--rate-limit`, `--latency-ms` ...); yields its URL and pid, stopped after."""
    port = free_port(package)
    command = [sys.executable, "-m", package, "sandbox", "--port", str(port), *options]
    process = subprocess.Popen(
        command,
        cwd=project,
        env=env,
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


def webhook_path(package: str) -> str:
    return importlib.import_module(f"{package}.config").DEFAULT_WEBHOOK_PATH


def intake(conn, package: str):
    """The project's own intake on `conn`, as the receiver builds it."""
    config = importlib.import_module(f"{package}.config")
    intake_module = importlib.import_module(f"{package}.intake")
    return intake_module.Intake(conn, config.Settings(secrets=("bench",)))


def queued(conn) -> int:
    """Events waiting on the project's queues."""
    return sum(conn.llen(f"rq:queue:{queue}") for queue in QUEUES)


# --- workers and CPU ----------------------------------------------------------------------


@contextlib.contextmanager
def workers(command: list[str], env: dict, project: Path, conn, count: int) -> Iterator[int]:
    """Start `command` in a process group of its own; yield its pid once `count` workers
    have registered with Redis; stop the whole group after."""
    process = subprocess.Popen(command, env=env, cwd=project, start_new_session=True)
    try:
        while conn.scard("rq:workers") < count:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited with {process.returncode}")
            time.sleep(0.05)
        yield process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def wait_until_finished(conn, ids: list[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while unfinished(conn, ids):
        if time.monotonic() > deadline:
            raise RuntimeError("the events were not drained in time")
        time.sleep(0.1)


def unfinished(conn, ids: list[str]) -> bool:
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(f"rq:job:{job_id}", "status")
    return any(status != b"finished" for status in pipe.execute())


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


# --- the printout -------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": str(cores),
        "cpu": model,
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
    }


def machine_line() -> str:
    info = machine()
    return f"machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}"
