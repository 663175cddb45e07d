"""`console`: serve the events console (`console/`, docs/console.md)."""

from __future__ import annotations

import argparse

from ..config import Settings
from .locate import located


def add_commands(commands: argparse._SubParsersAction) -> None:
    con = commands.add_parser("console", help="a web page to see, search and recover events")
    con.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other needs TW_CONSOLE_TOKEN)",
    )  # fmt: skip
    con.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    con.add_argument("--read-only", action="store_true", help="show, but never change anything")
    con.set_defaults(func=serve_console)


def serve_console(args: argparse.Namespace, settings: Settings) -> int:
    from ..console import server
    from ..console.security import check_binding

    check_binding(args.host, settings.console_token)  # a refusal comes alone, before the Redis
    return server.run(located(settings), args.host, args.port, read_only=args.read_only)
