"""Start the real thing for end-to-end tests: gunicorn and `worker` subprocesses.

Each runs from the project root with `PYTHONPATH` covering `src/` and `tests/`, talks to
the test's private Redis through `REDIS_URL`, and is stopped (its whole process group) when
the `with` block ends, whatever happens inside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.testing import TEST_SECRET

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "{{ cookiecutter.package_name }}"


def project_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment a deployed process would get, pointed at the test's Redis."""
    paths = [str(PROJECT_ROOT / "src"), str(PROJECT_ROOT / "tests")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TW_")}
    env.update(
        PYTHONPATH=os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        REDIS_URL=redis_url,
        # Not the project's `handlers` package: its code may call a real API. A test names
        # the handler modules it wants with TW_HANDLER_MODULES.
        TW_HANDLERS_PACKAGE="",
        TW_WEBHOOK_SECRETS=TEST_SECRET,
        TW_RETRY_BASE_SECONDS="1",
        # The receiver's metrics port is off unless a test asks for one (a free port).
        TW_METRICS_PORT="0",
        TW_METRICS_ADDR="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], log: Path, cwd: Path = PROJECT_ROOT
) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not up after {timeout} s:\n{log.read_text()}")


@contextlib.contextmanager
def gunicorn(env: dict[str, str], log: Path, workers: int = 2) -> Iterator[str]:
    """The receiver under gunicorn with the project's own gunicorn.conf.py; yields its URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
        f"{PACKAGE}.app:create_app()",
    ]  # fmt: skip
    with running(command, env, log) as process:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/readyz", process, log)
        yield base


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with running([sys.executable, "-m", PACKAGE, "worker"], env, log) as process:
        yield process


def cli(
    *args: str, env: dict[str, str], timeout: float = 120, cwd: Path = PROJECT_ROOT
) -> subprocess.CompletedProcess:
    """Run `python -m <package> ARGS` as a user would; capture its output."""
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The start of the warning Python 3.12+ gives when a process with threads forks.
FORK_WARNING = "This process"


def python(code: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with the project importable; capture its output.
    For what a test cannot do in its own process: fork, or see what happens at exit.

    Such code forks with threads running (the batching ones), as gunicorn's master does
    with its own; from `__main__`, Python 3.12+ warns about that on stderr, which the tests
    read, so that one warning is off.
    """
    return subprocess.run(
        [sys.executable, "-W", f"ignore:{FORK_WARNING}:DeprecationWarning", "-c", code],
        env=project_env("redis://unused"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def worker_metrics_ports(log: Path) -> dict[int, int]:
    """Each worker process's metrics port by pid, as its start line in `log` says: the
    first free port from `TW_WORKER_METRICS_PORT` (the next one up may be another
    program's)."""
    found = re.findall(
        r"worker metrics on http://[^:]+:(\d+)/metrics \(pid (\d+)\)", log.read_text()
    )
    return {int(pid): int(port) for port, pid in found}


def wait_for(predicate, timeout: float = 30, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy; return that, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, f"condition not met within {timeout} s"
            return value
        time.sleep(interval)


def totals(url: str, name: str, handler_prefix: str = "") -> float:
    """The sum over all label sets of one sample at a metrics URL."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("handler", "").startswith(handler_prefix)
    )
