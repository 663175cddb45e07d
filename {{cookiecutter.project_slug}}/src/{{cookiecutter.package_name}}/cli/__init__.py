"""Command line: `python -m {{ cookiecutter.package_name }} COMMAND`, or the console script.

Commands read settings from the environment (and `.env`), like the app and the worker.
Each returns an exit status; errors a person can fix are printed as one line, not as a
traceback, and exit 2 (`errors`). One module per command group adds its commands to the
parser (`parser`) and runs them.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import logs
from ..config import settings_from_env
from .errors import UsageError, exit_status
from .parser import build_parser

__all__ = ["UsageError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        settings = settings_from_env()
        logs.configure(settings.log_format, settings.log_level)
        return args.func(args, settings)

    return exit_status(run)
