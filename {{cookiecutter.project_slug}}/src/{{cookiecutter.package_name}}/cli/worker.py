"""`worker`: run the RQ worker on the project's queues, or N of them (`--processes`)."""

from __future__ import annotations

import argparse
import functools

from ..config import Settings
from ..events import QUEUES
from .arguments import count
from .errors import exit_status
from .locate import located


def add_commands(commands: argparse._SubParsersAction) -> None:
    work = commands.add_parser("worker", help="run an RQ worker on the project's queues")
    work.add_argument(
        "--queue", action="append", choices=QUEUES,
        help="listen on this queue only (repeatable; default: all, orders first)",
    )  # fmt: skip
    work.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    work.add_argument(
        "--processes", type=count, default=1, metavar="N",
        help="run N worker processes under this one, replacing any that dies (default 1)",
    )  # fmt: skip
    work.set_defaults(func=run_worker)


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here, before any fork: `worker --processes` children share it loaded.
    from .. import worker

    settings = located(settings)  # once: the children of --processes inherit it
    if args.processes == 1:
        worker.run(settings, args.queue, burst=args.burst)
        return 0
    from .. import supervisor

    child = functools.partial(worker_process, settings, args.queue, args.burst)
    return supervisor.supervise(args.processes, child, burst=args.burst, settings=settings)


def worker_process(settings: Settings, queue_names: list[str] | None, burst: bool) -> int:
    """One child of `worker --processes`: the single worker, with this command's exit
    statuses (2 for settings it refuses, which stops the others too)."""
    from .. import worker

    return exit_status(functools.partial(worker.run, settings, queue_names, burst=burst))
