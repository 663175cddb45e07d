"""`sign` and `replay`: sign deliveries as Tickets Wholesale does, and send them to a
receiver (docs/local-tools.md)."""

from __future__ import annotations

import argparse
import sys
import time

from .. import replay, signature
from ..config import Settings
from .arguments import count, http_url
from .errors import UsageError, open_named
from .locate import DEFAULT_URL, receiver_url


def add_commands(commands: argparse._SubParsersAction) -> None:
    sign = commands.add_parser("sign", help="print a TW-Signature header value for a body")
    sign.add_argument("file", help="file holding the raw body, or - for standard input")
    sign.add_argument("--timestamp", type=int, help="unix seconds to sign at (default: now)")
    sign.add_argument(
        "--secret", action="append", help="sign with this secret (default: the first of "
        "TW_WEBHOOK_SECRETS); repeat to sign with several",
    )  # fmt: skip
    sign.set_defaults(func=sign_body)

    rep = commands.add_parser("replay", help="sign events afresh and POST them to a receiver")
    rep.add_argument("paths", nargs="+", help=".json / .jsonl files or folders of them")
    rep.add_argument(
        "--url", type=http_url, help="receiver URL (default: the running dev's, else "
        f"{DEFAULT_URL}<webhook path>)",
    )  # fmt: skip
    rep.add_argument("--secret", action="append", help="sign with this secret instead")
    rep.add_argument("--fresh-ids", action="store_true", help="give every event a new id")
    rep.add_argument("--copies", type=count, default=1, metavar="N", help="send each event N times")
    rep.add_argument("--shuffle", action="store_true", help="send in random order")
    rep.add_argument("--seed", type=int, help="seed for --shuffle, to repeat an order")
    rep.add_argument("--concurrency", type=count, default=1, metavar="N", help="parallel senders")
    rep.add_argument("--rate", type=float, default=0.0, help="at most this many requests/s")
    rep.add_argument(
        "--max-attempts", type=count, default=6, metavar="N",
        help="attempts per event on 429/409/5xx/network errors, with exponential backoff",
    )  # fmt: skip
    rep.add_argument("--dry-run", action="store_true", help="print curl commands, send nothing")
    rep.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    rep.set_defaults(func=replay_events)


def sign_body(args: argparse.Namespace, settings: Settings) -> int:
    if args.file == "-":
        body = sys.stdin.buffer.read()
    else:
        with open_named(args.file) as file:
            body = file.read()
    secrets = args.secret or settings.require_secrets()[:1]
    print(signature.sign(body, secrets, args.timestamp))
    return 0


def replay_events(args: argparse.Namespace, settings: Settings) -> int:
    try:
        deliveries = replay.read_events(args.paths)
    except (FileNotFoundError, ValueError) as exc:  # a path that is not there, or not JSON
        raise UsageError(str(exc)) from None
    if args.fresh_ids:
        deliveries = replay.with_fresh_ids(deliveries)
    deliveries = replay.plan(deliveries, args.copies, args.shuffle, args.seed)
    options = replay.Options(
        url=args.url or receiver_url(settings, quiet=args.dry_run),
        secrets=tuple(args.secret or settings.require_secrets()[:1]),
        concurrency=args.concurrency,
        rate=args.rate,
        max_attempts=args.max_attempts,
        stop_when_refused=True,
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
    try:
        results = replay.run(deliveries, options, on_result=report)
    except replay.Unreachable as exc:
        print(f"replay: {exc}; is the receiver (`dev`) running? --url sends elsewhere")
        return 1
    print(replay.format_summary(results, time.monotonic() - started))
    return 0 if all(result.ok for result in results) else 1
