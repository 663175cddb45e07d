"""The `dev` command: web app (auto-reload), worker and, when `REDIS_URL` is unset, an
embedded Redis, in one terminal with each line prefixed by the process it came from. With
`--sandbox`, the API sandbox as well, sending its webhooks to this receiver.

Code changes reach both tiers: gunicorn's `--reload` restarts the web workers, and the
worker, which loads the handlers once at start, is restarted between jobs: on a change to
a `.py` file of the package (its `handlers/` included) or of a `TW_HANDLER_MODULES`
module, it gets SIGTERM, finishes the job it is running, exits, and a fresh one starts. A
worker that exits by itself (killed, or a handler module that does not import) is started
again as `worker --processes` does: at once if it had run a while, else after a pause that
doubles each time (1 s up to 30 s); or at the next change, if that comes first. The web
tier keeps running meanwhile.

Each child runs in a session of its own, so that on Ctrl-C (or SIGTERM) the whole process
group of each one, gunicorn's workers included, is stopped here and nothing is orphaned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping

from ..config import settings_from_env
from . import reloader, state
from .embedded_redis import EmbeddedRedis, free_port

# The receiver's package, this one's parent: what the children run.
PACKAGE = __package__.rpartition(".")[0]
STOP_TIMEOUT_SECONDS = 10
# A worker that exited sooner than this after its start died young: the next one waits,
# twice as long each time up to the maximum (the figures of `supervisor.py`).
YOUNG_SECONDS = 10.0
MAX_PAUSE_SECONDS = 30.0


def commands(host: str, port: int, reload: bool) -> dict[str, list[str]]:
    web = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{host}:{port}",
        "--workers", "1",
        "--access-logfile", "-",
        "--no-control-socket",
        *(["--reload"] if reload else []),
        f"{PACKAGE}.app:create_app()",
    ]  # fmt: skip
    worker = [sys.executable, "-m", PACKAGE, "worker"]
    return {"web": web, "worker": worker}


def sandbox_process(
    env: Mapping[str, str], host: str, port: int, webhook_path: str
) -> tuple[list[str], dict[str, str]]:
    """For `dev --sandbox`: the `sandbox` command on a free port, sending its webhooks to
    the dev receiver, and the variables that point the worker's API client at it."""
    from ..sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    api_port = free_port()
    receiver_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    command = [
        sys.executable, "-m", PACKAGE, "sandbox", "--port", str(api_port),
        "--webhook-url", f"http://{receiver_host}:{port}{webhook_path}",
    ]  # fmt: skip
    api_env = {
        "TW_API_BASE_URL": f"http://127.0.0.1:{api_port}",
        "TW_API_CLIENT_ID": env.get("TW_API_CLIENT_ID") or DEFAULT_CLIENT_ID,
        "TW_API_CLIENT_SECRET": env.get("TW_API_CLIENT_SECRET") or DEFAULT_CLIENT_SECRET,
    }
    return command, api_env


def _pump(name: str, stream, lock: threading.Lock) -> None:
    for line in iter(stream.readline, b""):
        with lock:
            sys.stdout.write(f"{name:>6} | {line.decode(errors='replace')}")
            sys.stdout.flush()


def _spawn(name: str, command: list[str], env: Mapping[str, str], lock) -> subprocess.Popen:
    """Start one child in a session of its own, its lines prefixed with `name`."""
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    threading.Thread(target=_pump, args=(name, process.stdout, lock), daemon=True).start()
    return process


class WorkerRestarts:
    """Restarts the worker between jobs when watched files change (see the module's doc)."""

    def __init__(self, watcher: reloader.Watcher, start):
        self.watcher = watcher
        self.start = start  # () -> a new worker process
        self.stopping: subprocess.Popen | None = None  # the worker asked to stop, if any
        self.dead: subprocess.Popen | None = None  # a worker that exited by itself
        self.started = time.monotonic()  # when the current worker started
        self.pause = 0.0  # before starting again after a worker that died young
        self.due = 0.0  # when to start the next worker after `dead` (monotonic seconds)

    def check(self, worker: subprocess.Popen) -> subprocess.Popen:
        """Look for changes and for the worker's exit; return the worker to watch next."""
        changed = self.watcher.changed()
        if worker.poll() is None:
            if changed and self.stopping is None:
                _say(f"{_shorten(changed)} changed: the worker restarts after its current job")
                os.killpg(worker.pid, signal.SIGTERM)
                self.stopping = worker
            return worker
        now = time.monotonic()
        if worker is self.stopping or (worker is self.dead and (changed or now >= self.due)):
            self.stopping = self.dead = None
            self.started = now
            return self.start()
        if worker is not self.dead:
            self.dead = worker
            young = now - self.started < YOUNG_SECONDS
            self.pause = min(max(1.0, 2 * self.pause), MAX_PAUSE_SECONDS) if young else 0.0
            self.due = now + self.pause
            _say(
                f"worker exited ({_describe(worker.returncode)}); it starts again "
                + (f"in {self.pause:.0f} s, or when a file changes" if self.pause else "now")
            )
        return worker


def _describe(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"


def _shorten(paths: list[str]) -> str:
    """The first few of `paths`, relative to the working directory when under it."""
    here = os.getcwd() + os.sep
    names = [os.path.relpath(path) if path.startswith(here) else path for path in paths]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _say(message: str) -> None:
    print(f"   dev | {message}", flush=True)


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run(
    env: Mapping[str, str],
    host: str = "127.0.0.1",
    port: int = 8000,
    reload: bool = True,
    sandbox_webhook_path: str | None = None,
) -> int:
    """Run everything until Ctrl-C, SIGTERM or a child exiting; return an exit status.

    With `sandbox_webhook_path`, the API sandbox runs too and posts its webhooks there."""
    child_env = dict(env)
    # gunicorn.conf.py, read from the working directory, serves the metrics (9180): like
    # the receiver, only on this host unless told otherwise.
    child_env.setdefault("TW_METRICS_ADDR", host)
    children = commands(host, port, reload)
    if sandbox_webhook_path is not None:
        children["api"], api_env = sandbox_process(env, host, port, sandbox_webhook_path)
        child_env.update(api_env)
        print(
            f"   dev | API sandbox on {api_env['TW_API_BASE_URL']} (the worker's "
            f"TW_API_BASE_URL, client id {api_env['TW_API_CLIENT_ID']}); its webhooks go to "
            "the receiver",
            flush=True,
        )
    embedded = None
    published = contextlib.ExitStack()
    receiver_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    receiver = f"http://{f'[{receiver_host}]' if ':' in receiver_host else receiver_host}:{port}"
    if not child_env.get("REDIS_URL"):
        embedded = EmbeddedRedis().start()
        child_env["REDIS_URL"] = embedded.url
    # For the commands of another terminal: this Redis (if ours) and receiver (`replay`).
    published.enter_context(state.published(embedded.url if embedded else None, receiver=receiver))
    if embedded is not None:
        print(
            f" redis | embedded Redis at {embedded.url}; `events`, `failed` and the other "
            f"commands run from this directory use it while REDIS_URL is unset "
            f"({state.STATE_FILE})",
            flush=True,
        )
    lock = threading.Lock()
    processes: dict[str, subprocess.Popen] = {}
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        for name, command in children.items():
            processes[name] = _spawn(name, command, child_env, lock)
        print(f"   dev | receiver on http://{host}:{port}; Ctrl-C stops everything", flush=True)
        restarts = None
        if reload:
            roots = reloader.watched_roots(settings_from_env(child_env).handler_modules)
            restarts = WorkerRestarts(
                reloader.Watcher(roots),
                lambda: _spawn("worker", children["worker"], child_env, lock),
            )
            _say(
                "reload: web on code changes (gunicorn --reload); worker restarted between "
                f"jobs on changes under {_shorten([str(root) for root in roots])}"
            )
        while not stopping.wait(0.2):
            if restarts is not None:
                processes["worker"] = restarts.check(processes["worker"])
            ended = [
                f"{n} (exit {p.returncode})"
                for n, p in processes.items()
                if p.poll() is not None and not (restarts and n == "worker")
            ]
            if ended:
                print(f"   dev | {', '.join(ended)} ended; stopping the rest", flush=True)
                status = 1
                break
    finally:
        _stop(processes)
        published.close()
        if embedded is not None:
            embedded.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        print("   dev | stopped", flush=True)
    return status
