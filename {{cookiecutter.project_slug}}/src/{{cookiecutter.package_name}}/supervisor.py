"""`worker --processes N`: N worker processes under one command, replaced when they die.

Each child is forked from this process, runs the entry point it is given and exits with
the status that returns. This module knows nothing of the commands and imports neither
them nor the worker: the `worker` command passes the single-process worker's run, with
the settings (and the Redis) it located once, before the fork. So each child keeps every
guarantee that command has (atomic job moves, the heartbeat, recovery of abandoned jobs,
riding out a Redis outage, its own metrics port) without a line of it being written twice.
The fork makes a child quick to start, as the interpreter and the libraries are loaded
already; the handlers are not imported here but in each child, so whatever a handler
module opens at import (a database connection, an HTTP client) belongs to one process
only.

This loop only starts, watches and stops the children:

- a child that dies (kill -9, out of memory) is started again, after a growing pause if it
  keeps dying young; the job it was running is recovered by the others, as with separate
  workers. A child that exits with status 2, the commands' "fix your settings" status,
  stops the whole command with that status, since starting it again cannot help; any
  other status (1: an exception, whose traceback the child prints) is a death like the
  others, and the child is started again;
- SIGTERM or SIGINT is passed to every child, which finishes its running job and exits
  (RQ's warm shutdown); a second one is passed on too, and cuts the jobs short (RQ's cold
  shutdown, as with one worker: RQ counts the cut as a handler failure, to be retried).

Each child runs in a process group of its own, with the scheduler process RQ forks for
it, so that a Ctrl-C in a terminal reaches the children once, through here, and not
twice; and so that when a child dies, its orphaned scheduler (which would keep the dead
child's metrics port) is killed with it before the replacement starts.

RQ's own `WorkerPool` forks its children too, and drains at the same rate; but it forks
them from a parent that imported the handlers, and builds each worker from RQ's defaults,
without `TW_WORKER_LOST_AFTER_SECONDS` or the metrics port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pkgutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import NoReturn

from .config import ConfigError, Settings
from .metrics import WORKER_PORT_RANGE

log = logging.getLogger(__name__)

# A child's entry point: a function taking no arguments that returns the child's exit
# status (None: 0), or its "module:function" name, imported in the child after the fork.
Entry = Callable[[], int | None] | str

# The exit status of a command that refused its settings or its input (`cli.errors`).
SETTINGS_ERROR = 2
# A child that lived shorter than this died young: wait before starting the next one,
# twice as long each time (up to MAX_PAUSE), so a child that cannot start does not spin.
YOUNG_SECONDS = 10.0
MAX_PAUSE_SECONDS = 30.0
POLL_SECONDS = 0.1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _become_child(entry: Entry) -> NoReturn:
    """In a forked child: run `entry`, then exit with its status."""
    status = 1
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        run = pkgutil.resolve_name(entry) if isinstance(entry, str) else entry
        result = run()
        status = 0 if result is None else result
    except SystemExit as exc:  # RQ's cold shutdown
        status = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


class _Slot:
    """One of the N places a child runs in: its process and its restart pause."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.pid: int | None = None
        self.started = 0.0
        self.pause = 0.0  # before the next start, after a child that died young
        self.due = 0.0  # when to start the next child (monotonic seconds)
        self.done = False  # never started again

    def start(self, now: float) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # Stop signals wait until the child has its own handlers (or the parent its pid).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                _become_child(self.entry)
            with contextlib.suppress(OSError):
                os.setpgid(pid, pid)  # as the child does: whichever runs first
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self.pid, self.started = pid, now

    def poll(self) -> int | None:
        """The child's exit status once it has ended (negative: killed by that signal)."""
        if self.pid is None:
            return None
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        return None if pid == 0 else os.waitstatus_to_exitcode(status)

    def signal(self, signum: int) -> None:
        """Send `signum` to the child and the processes it started, if any are left."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def ended(self, now: float, code: int, replace: bool) -> None:
        """Forget the child that exited with `code`; plan its replacement, or be done."""
        self.signal(signal.SIGKILL)  # what it leaves behind: its scheduler, when it was killed
        pid, self.pid = self.pid, None
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
    entry: Entry,
    burst: bool = False,
    settings: Settings | None = None,
) -> int:
    """Run `processes` children of `entry` until a stop signal (or, with `burst`, until
    each has exited 0: a child that is done is not started again).

    Returns the command's exit status: 0 after a stop or a finished burst, 2 when a child
    refused the settings.
    """
    if settings and settings.worker_metrics_port and processes > WORKER_PORT_RANGE:
        raise ConfigError(
            f"TW_WORKER_METRICS_PORT gives each worker process its own port, at most "
            f"{WORKER_PORT_RANGE} per host: run at most {WORKER_PORT_RANGE} processes"
        )
    slots = [_Slot(entry) for _ in range(processes)]
    signals: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, frame: signals.append(signum))
        for signum in STOP_SIGNALS
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
                code = slot.poll()
                if code is not None:
                    refused = code == SETTINGS_ERROR and not stopping
                    slot.ended(now, code, replace=not (stopping or refused or (burst and not code)))
                    if refused:
                        log.error("a worker process refused the settings; stopping")
                        status, stopping = SETTINGS_ERROR, True
                        signals.append(signal.SIGTERM)
                if stopping:
                    slot.done = slot.pid is None
                elif not slot.done and slot.pid is None and now >= slot.due:
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
