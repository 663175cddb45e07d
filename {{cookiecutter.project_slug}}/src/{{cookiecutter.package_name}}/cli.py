"""Command line: `python -m {{ cookiecutter.package_name }} COMMAND`, or the console script.

Commands read settings from the environment (and `.env`), like the app and the worker.
Each returns an exit status; errors a person can fix are printed as one line, not as a
traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from . import logs, replay, signature
from .config import ConfigError, Settings, load_environment, settings_from_env
from .events import QUEUES

DEFAULT_URL = "http://127.0.0.1:8000"


def cmd_sign(args: argparse.Namespace, settings: Settings) -> int:
    if args.file == "-":
        body = sys.stdin.buffer.read()
    else:
        with open(args.file, "rb") as file:
            body = file.read()
    secrets = args.secret or settings.require_secrets()[:1]
    print(signature.sign(body, secrets, args.timestamp))
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    deliveries = replay.read_events(args.paths)
    if args.fresh_ids:
        deliveries = replay.with_fresh_ids(deliveries)
    deliveries = replay.plan(deliveries, args.copies, args.shuffle, args.seed)
    options = replay.Options(
        url=args.url or DEFAULT_URL + settings.webhook_path,
        secrets=tuple(args.secret or settings.require_secrets()[:1]),
        concurrency=args.concurrency,
        rate=args.rate,
        max_attempts=args.max_attempts,
    )
    if args.dry_run:
        for delivery in deliveries:
            print(replay.curl_command(delivery, options))
        return 0
    progress = replay.Progress(len(deliveries))

    def report(result: replay.Result) -> None:
        progress.update(result)
        if not args.quiet:
            envelope = result.delivery.envelope
            print(
                f"{result.status or '---'} {result.outcome:<28} {envelope.get('type', '?'):<18} "
                f"{envelope.get('id', '?')}  ({result.delivery.source})"
                + (f" after {result.attempts} attempts" if result.attempts > 1 else "")
                + (f": {result.detail}" if result.detail and not result.ok else ""),
                flush=True,
            )

    started = time.monotonic()
    results = replay.run(deliveries, options, on_result=report)
    print(replay.format_summary(results, time.monotonic() - started))
    return 0 if all(result.ok for result in results) else 1


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from . import worker

    worker.run(settings, args.queue, burst=args.burst)
    return 0


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from . import devserver

    settings.require_secrets()
    return devserver.run(load_environment(), args.host, args.port, reload=not args.no_reload)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="{{ cookiecutter.project_slug }}",
        description="Receive, verify and process Tickets Wholesale webhooks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sign = commands.add_parser("sign", help="print a TW-Signature header value for a body")
    sign.add_argument("file", help="file holding the raw body, or - for standard input")
    sign.add_argument("--timestamp", type=int, help="unix seconds to sign at (default: now)")
    sign.add_argument(
        "--secret", action="append", help="sign with this secret (default: the first of "
        "TW_WEBHOOK_SECRETS); repeat to sign with several",
    )  # fmt: skip
    sign.set_defaults(func=cmd_sign)

    rep = commands.add_parser("replay", help="sign events afresh and POST them to a receiver")
    rep.add_argument("paths", nargs="+", help=".json / .jsonl files or folders of them")
    rep.add_argument("--url", help=f"receiver URL (default: {DEFAULT_URL}<webhook path>)")
    rep.add_argument("--secret", action="append", help="sign with this secret instead")
    rep.add_argument("--fresh-ids", action="store_true", help="give every event a new id")
    rep.add_argument("--copies", type=int, default=1, metavar="N", help="send each event N times")
    rep.add_argument("--shuffle", action="store_true", help="send in random order")
    rep.add_argument("--seed", type=int, help="seed for --shuffle, to repeat an order")
    rep.add_argument("--concurrency", type=int, default=1, metavar="N", help="parallel senders")
    rep.add_argument("--rate", type=float, default=0.0, help="at most this many requests/s")
    rep.add_argument(
        "--max-attempts", type=int, default=6, metavar="N",
        help="attempts per event on 429/409/5xx/network errors, with exponential backoff",
    )  # fmt: skip
    rep.add_argument("--dry-run", action="store_true", help="print curl commands, send nothing")
    rep.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    rep.set_defaults(func=cmd_replay)

    work = commands.add_parser("worker", help="run an RQ worker on the project's queues")
    work.add_argument(
        "--queue", action="append", choices=QUEUES,
        help="listen on this queue only (repeatable; default: all, orders first)",
    )  # fmt: skip
    work.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    work.set_defaults(func=cmd_worker)

    dev = commands.add_parser("dev", help="web + worker (+ embedded Redis) with auto-reload")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--no-reload", action="store_true", help="do not restart on code changes")
    dev.set_defaults(func=cmd_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_env()
        logs.configure(settings.log_format, settings.log_level)
        return args.func(args, settings)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
