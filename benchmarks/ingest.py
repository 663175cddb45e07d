"""Ingest figures: the receiver against a bare Flask app on the same gunicorn settings.

Both apps are served by the project's own `gunicorn.conf.py` (same workers, worker class,
threads, keep-alive) and loaded by the same generator with the same connections. Runs
alternate (bare, receiver, bare, receiver, ...) so drift of the machine hits both alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import loadgen

HERE = Path(__file__).resolve().parent
SECRET = "whsec_benchmark"
LOG_DIR = Path(tempfile.gettempdir())


@contextlib.contextmanager
def gunicorn(
    project: Path, app: str, port: int, redis_url: str, extra_env: dict
) -> Iterator[tuple[str, int]]:
    """Serve `app` with the project's gunicorn.conf.py on `port`; yield its base URL and
    the process group of its master and workers (see `cpu_seconds`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TW_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(project / "src"), str(HERE)]),
        REDIS_URL=redis_url,
        TW_WEBHOOK_SECRETS=SECRET,
        GUNICORN_LOG_LEVEL="warning",
        PORT=str(port),
        GUNICORN_BIND=f"127.0.0.1:{port}",
    )
    env.update(extra_env)
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app]
    # The receiver logs one line per request at INFO, as deployed: into a pipe that
    # another process drains (journald, Docker's log driver), here `drain_log` to a file.
    log = open(LOG_DIR / f"gunicorn-{port}.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        command,
        cwd=project,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    drainer = threading.Thread(target=drain_log, args=(process.stdout, log), daemon=True)
    drainer.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early serving {app}")
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield base, process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        drainer.join(timeout=5)
        log.close()


def cpu_seconds(group: int) -> float | None:
    """CPU time (user and system) spent so far by the processes of process group `group`,
    counting the workers gunicorn has already replaced (their time is in the master's
    reaped children's). From /proc; None where there is none."""
    total = 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for name in names:
        if not name.isdigit():
            continue
        try:
            stat = Path("/proc", name, "stat").read_text()
        except OSError:
            continue  # gone since the listing
        fields = stat.rpartition(")")[2].split()  # the name in () may hold spaces
        if int(fields[2]) == group:  # pgrp; then utime, stime, cutime, cstime
            total += sum(int(f) for f in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def drain_log(pipe, log) -> None:
    """Copy a server's output from its pipe to `log` as fast as it comes."""
    for chunk in iter(lambda: pipe.read1(65536), b""):
        log.write(chunk)


def sample_event(project: Path) -> dict:
    """A realistic order event body: the first sample the project ships."""
    samples = sorted((project / "samples" / "events").glob("*.json"))
    return json.loads(samples[0].read_text()) if samples else {"type": "order.created"}


def load(url: str, requests, seconds: float, connections: int, use_wrk: bool, **kw):
    if use_wrk:
        return loadgen.run_wrk(url, requests, seconds, connections, **kw)
    kw.pop("mean_latency_ms", None)
    return loadgen.run_python(url, requests, seconds, connections, **kw)
