"""`worker --processes N`: N worker processes under one command, replaced when they die.

Each child is the single-process `worker` command itself, started afresh (`python -m
<package> worker`), so it keeps every guarantee that command has (atomic job moves, the
heartbeat, recovery of abandoned jobs, riding out a Redis outage, its own metrics port)
without a line of it being written twice. This loop only starts, watches and stops them:

- a child that dies (kill -9, out of memory) is started again, after a growing pause if it
  keeps dying young; the job it was running is recovered by the others, as with separate
  workers. A child that exits with status 2, the commands' "fix your settings" status,
  stops the whole command with that status, since starting it again cannot help;
- SIGTERM or SIGINT is passed to every child, which finishes its running job and exits
  (RQ's warm shutdown); a second one is passed on too, and cuts the jobs short (RQ's cold
  shutdown, as with one worker: those jobs come back as abandoned).

Each child runs in a process group of its own, with the scheduler process RQ forks for
it, so that a Ctrl-C in a terminal reaches the children once, through here, and not
twice; and so that when a child dies, its orphaned scheduler (which would keep the dead
child's metrics port) is killed with it before the replacement starts.

RQ's own `WorkerPool` forks its children instead. It was measured against this loop and
left aside: the throughput is the same (each child runs the same job loop), and it builds
its workers itself, without this project's settings (`TW_WORKER_LOST_AFTER_SECONDS`, the
metrics port, Sentinel connections), so using it would mean overriding its internals
(see docs/operations.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from .config import ConfigError, Settings
from .metrics import WORKER_PORT_RANGE

log = logging.getLogger(__name__)

# The exit status of a command that refused its settings (see `cli.main`).
SETTINGS_ERROR = 2
# A child that lived shorter than this died young: wait before starting the next one,
# twice as long each time (up to MAX_PAUSE), so a child that cannot start does not spin.
YOUNG_SECONDS = 10.0
MAX_PAUSE_SECONDS = 30.0
POLL_SECONDS = 0.1


def child_command(queue_names: Sequence[str] | None, burst: bool) -> list[str]:
    """The single-process `worker` command each child runs."""
    queues = [arg for name in queue_names or () for arg in ("--queue", name)]
    return [sys.executable, "-m", __package__, "worker", *queues, *(["--burst"] if burst else [])]


class _Slot:
    """One of the N places a child runs in: its process and its restart pause."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.process: subprocess.Popen | None = None
        self.started = 0.0
        self.pause = 0.0  # before the next start, after a child that died young
        self.due = 0.0  # when to start the next child (monotonic seconds)
        self.done = False  # never started again

    def start(self, now: float) -> None:
        self.process = subprocess.Popen(self.command, process_group=0)
        self.started = now

    def signal(self, signum: int) -> None:
        """Send `signum` to the child and the processes it started, if any are left."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def ended(self, now: float, code: int, replace: bool) -> None:
        """Forget the child that exited with `code`; plan its replacement, or be done."""
        self.signal(signal.SIGKILL)  # what it leaves behind: its scheduler, when it was killed
        pid, self.process = self.process.pid, None
        if not replace:
            self.done = True
            level = logging.INFO if code == 0 else logging.WARNING
            log.log(level, "worker process %d exited (%s)", pid, _describe(code))
            return
        young = now - self.started < YOUNG_SECONDS
        self.pause = min(max(1.0, 2 * self.pause), MAX_PAUSE_SECONDS) if young else 0.0
        self.due = now + self.pause
        log.warning(
            "worker process %d exited (%s); starting another%s",
            pid, _describe(code), f" in {self.pause:.0f} s" if self.pause else "",
        )  # fmt: skip


def supervise(
    processes: int,
    queue_names: Sequence[str] | None = None,
    burst: bool = False,
    settings: Settings | None = None,
) -> int:
    """Run `processes` workers until a stop signal (or, with `burst`, until all are done).

    Returns the command's exit status: 0 after a stop or a finished burst, 2 when a child
    refused the settings.
    """
    if settings and settings.worker_metrics_port and processes > WORKER_PORT_RANGE:
        raise ConfigError(
            f"TW_WORKER_METRICS_PORT gives each worker process its own port, at most "
            f"{WORKER_PORT_RANGE} per host: run at most {WORKER_PORT_RANGE} processes"
        )
    slots = [_Slot(child_command(queue_names, burst)) for _ in range(processes)]
    signals: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, frame: signals.append(signum))
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    stopping = False
    status = 0
    log.info("supervising %d worker processes (pid %d)", processes, os.getpid())
    try:
        while True:
            while signals:
                signum = signals.pop(0)
                if not stopping:
                    log.info("stopping: each worker finishes its running job, then exits")
                    stopping = True
                for slot in slots:
                    slot.signal(signum)
            now = time.monotonic()
            for slot in slots:
                code = None if slot.process is None else slot.process.poll()
                if code is not None:
                    refused = code == SETTINGS_ERROR and not stopping
                    slot.ended(now, code, replace=not (stopping or refused or (burst and not code)))
                    if refused:
                        log.error("a worker refused the settings; stopping the others")
                        status = SETTINGS_ERROR
                        signals.append(signal.SIGTERM)
                if stopping:
                    slot.done = slot.process is None
                elif not slot.done and slot.process is None and now >= slot.due:
                    slot.start(now)
            if all(slot.done for slot in slots):
                return status
            time.sleep(POLL_SECONDS)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"status {code}"
