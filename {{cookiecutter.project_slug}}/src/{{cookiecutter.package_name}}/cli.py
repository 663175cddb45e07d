"""Command line: `python -m {{ cookiecutter.package_name }} COMMAND`, or the console script.

Commands read settings from the environment (and `.env`), like the app and the worker.
Each returns an exit status; errors a person can fix are printed as one line, not as a
traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import redis

from . import (
    capture,
    devstate,
    event_filters,
    event_status,
    lanes,
    logs,
    recovery,
    replay,
    secret_usage,
    signature,
)
from .config import ConfigError, Settings, load_environment, settings_from_env
from .connection import connect, describe
from .events import QUEUES, check_type_pattern

DEFAULT_URL = "http://127.0.0.1:8000"
# `failed retry` draws a progress bar (on a terminal) from this many events up.
PROGRESS_FROM = 100


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
        url=args.url or _replay_url(settings, quiet=args.dry_run),
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


def _replay_url(settings: Settings, quiet: bool = False) -> str:
    """Where `replay` sends without --url: the receiver of the `dev` running from this
    directory (its port may not be the default), else the default; named on stderr."""
    base, source = devstate.running_dev_receiver(), f"the running dev's, from {devstate.STATE_FILE}"
    if base is None:
        base, source = DEFAULT_URL, "the default; --url to change"
    if not quiet:
        print(f"Receiver: {base}{settings.webhook_path} ({source})", file=sys.stderr)
    return base + settings.webhook_path


def _located(settings: Settings) -> Settings:
    """The settings of the Redis a command reads, named on stderr in one line: a command
    that read the wrong Redis in silence would say "no events" about the right one. While
    REDIS_URL is unset, a `dev` running from this directory lends its embedded Redis."""
    if settings.redis_sentinels:
        source = "TW_REDIS_SENTINELS"
    elif load_environment().get("REDIS_URL", "").strip():
        source = "REDIS_URL"
    else:
        source = "REDIS_URL is unset: the default"
        try:
            url = devstate.running_dev_redis()
        except devstate.StaleState as exc:
            source += f", ignoring {exc}"
        else:
            if url:
                settings = dataclasses.replace(settings, redis_url=url)
                source = f"REDIS_URL is unset: the running dev's, from {devstate.STATE_FILE}"
    print(f"Redis: {describe(settings)} ({source})", file=sys.stderr)
    return settings


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def _event_table(infos: list[event_status.EventInfo]) -> str:
    rows = [("id", "type", "status", "tries", "last activity", "error")]
    for info in infos:
        rows.append((
            info.id, info.type, info.status, str(info.attempts),
            _when(info.ended_at or info.enqueued_at), info.error_summary,
        ))  # fmt: skip
    # Every column padded but the last, the error, which may be long: `events show` has it all.
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ("  ".join([*map(str.ljust, row, widths), row[-1]]).rstrip() for row in rows)
    return "\n".join(lines)


def cmd_events_list(args: argparse.Namespace, settings: Settings) -> int:
    infos = event_status.list_events(connect(_located(settings)), args.status, args.limit)
    if not infos:
        print("no events" + (f" with status {args.status}" if args.status else ""))
        return 0
    print(_event_table(infos))
    return 0


def cmd_events_show(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(_located(settings))
    info = event_status.show(connection, args.id, settings.dedupe_window_seconds)
    archived = event_status.captured(connection, args.id)
    if info is None and archived is None:
        print(f"error: no trace of event {args.id} in this Redis", file=sys.stderr)
        return 1
    if info is not None:
        print(f"id:            {info.id}")
        print(f"type:          {info.type}")
        print(f"status:        {info.status}" + (f" (queue {info.queue})" if info.queue else ""))
        print(f"seen marker:   {'yes' if info.seen else 'no (outside the dedupe window)'}")
        print(f"enqueued at:   {_when(info.enqueued_at)}")
        print(f"ended at:      {_when(info.ended_at)}")
        print(f"attempts:      {info.attempts}")
        if info.abandoned:
            print(f"abandoned:     {info.abandoned} run(s) cut short by a lost worker, requeued")
        print(f"retries left:  {info.retries_left if info.retries_left is not None else 0}")
        print(f"handlers done: {', '.join(info.handlers_done) or '-'}")
        if info.handlers_failed:
            print(f"failed last:   {', '.join(info.handlers_failed)}")
        if info.duplicate_of:  # see docs/reconcile.md
            print(f"duplicate of:  {info.duplicate_of} (delivered this order change first)")
        if info.last_error:
            print("last error:\n  " + info.last_error.strip().replace("\n", "\n  "))
    if archived is not None:
        received = datetime.fromtimestamp(archived.received, UTC)
        print(f"captured at:   {_when(received)} (request {archived.request_id or '-'})")
        print("headers:       " + json.dumps(archived.headers, sort_keys=True))
    if args.body:
        envelope = info.envelope if info is not None and info.envelope else None
        if envelope is None and archived is not None:
            envelope = json.loads(archived.body)
        print(json.dumps(envelope, indent=2))
    return 0


def cmd_events_export(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(_located(settings))
    event_filter = _event_filter(args)
    if args.output == "-":
        count = event_filters.export_matching(
            connection, sys.stdout.buffer, event_filter, args.limit
        )
        sys.stdout.flush()
    else:
        with open(args.output, "wb") as out:
            count = event_filters.export_matching(connection, out, event_filter, args.limit)
    where = "standard output" if args.output == "-" else args.output
    print(f"exported {count} event(s) to {where}", file=sys.stderr)
    if not count and not capture.size(connection):
        print(
            "the capture archive in this Redis is empty: the receiver archives the events it "
            "accepts only while TW_CAPTURE_MAX_EVENTS is set",
            file=sys.stderr,
        )
    return 0


def _event_filter(args: argparse.Namespace) -> event_filters.EventFilter:
    return event_filters.EventFilter(
        event_type=args.type, handler=args.handler, since=args.since, until=args.until
    )


def _matching(event_filter: event_filters.EventFilter) -> str:
    return f" matching {event_filter.describe()}" if not event_filter.empty else ""


def cmd_failed_list(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(_located(settings))
    event_filter = _event_filter(args)
    if event_filter.empty:
        infos = event_status.list_events(connection, "failed", args.limit)
    else:
        matching = event_filters.failed_matching(connection, event_filter)
        infos = sorted(matching, key=lambda info: info.last_activity, reverse=True)[: args.limit]
    if not infos:
        print("no failed events" + _matching(event_filter))
        return 0
    print(_event_table(infos))
    return 0


def cmd_failed_retry(args: argparse.Namespace, settings: Settings) -> int:
    settings = _located(settings)
    connection = connect(settings)
    event_filter = _event_filter(args)
    by_filter = args.all or not event_filter.empty
    if by_filter == bool(args.ids):
        print("error: give event ids, or --all or filters (not both)", file=sys.stderr)
        return 2
    if by_filter:
        ids = [info.id for info in event_filters.failed_matching(connection, event_filter)]
        if not ids:
            print("no failed events" + _matching(event_filter))
            return 0
    else:
        ids = args.ids
    if args.dry_run:
        print(f"would requeue {len(ids)} event(s):")
        print("\n".join(ids))
        return 0
    progress = replay.Progress(len(ids), sys.stderr) if len(ids) >= PROGRESS_FROM else None
    status = 0
    for event_id in ids:
        try:
            job = recovery.retry(connection, settings, event_id)
        except recovery.NotFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
        else:
            print(f"requeued {event_id} on {job.origin}")
        if progress is not None:
            progress.update()
    return status


def _ago(moment: datetime, now: datetime) -> str:
    seconds = max(int((now - moment).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def cmd_secrets(args: argparse.Namespace, settings: Settings) -> int:
    uses = secret_usage.secret_usage(connect(_located(settings)), settings.require_secrets())
    now = datetime.now(UTC)
    rows = [("secret", "fingerprint", "last verified a delivery")]
    for use in uses:
        position = str(use.position) if use.position else "not here"
        when = "never" if use.last_verified is None else (
            f"{_when(use.last_verified)} ({_ago(use.last_verified, now)})"
        )  # fmt: skip
        rows.append((position, use.fingerprint, when))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for row in rows:
        print("  ".join([*map(str.ljust, row[:2], widths), row[2]]))
    if any(use.position is None for use in uses):
        print(
            "\n'not here': a secret this receiver does not have verified deliveries on "
            "another receiver sharing this Redis."
        )
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.processes > 1:
        from . import supervisor

        return supervisor.supervise(args.processes, args.queue, args.burst, settings)
    from . import worker

    worker.run(_located(settings), args.queue, burst=args.burst)
    return 0


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from . import devserver

    settings.require_secrets()
    return devserver.run(
        load_environment(), args.host, args.port, reload=not args.no_reload,
        sandbox_webhook_path=settings.webhook_path if args.sandbox else None,
    )  # fmt: skip


def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from . import sandbox

    options = sandbox.Options(
        client_id=settings.api_client_id or sandbox.DEFAULT_CLIENT_ID,
        client_secret=settings.api_client_secret or sandbox.DEFAULT_CLIENT_SECRET,
        token_ttl=args.token_ttl,
        rate_limit=args.rate_limit,
        fail_rate=args.fail_rate,
        fail_token=args.fail_token,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        seed=args.seed,
        webhook_url=args.webhook_url,
        webhook_secret=settings.require_secrets()[0] if args.webhook_url else None,
        webhook_retry_window=args.webhook_retry_window,
        webhook_loss=args.webhook_loss,
        sample_orders=True,  # so the samples' orders can be fetched
    )
    sandbox.serve(
        options, args.host, args.port, lambda line: print(line, flush=True), public=args.public
    )
    return 0


# --- reconcile (docs/reconcile.md) -------------------------------------------------------


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from . import reconcile

    try:
        report = reconcile.run_once(_located(settings), since=args.since, dry_run=args.dry_run)
    except reconcile.Busy as exc:
        print(f"error: {exc}; try again when it ends", file=sys.stderr)
        return 1
    for event_id in report.events:
        print(("would feed " if args.dry_run else "fed ") + event_id)
    print(report.summary())
    return 1 if report.outcome == "error" else 0


def _time_ago(value: str) -> float:
    """An argparse type: a duration (90s, 15m, 2h, 3d), as the moment that long ago."""
    if not value.strip() or value.strip()[-1:] not in ("s", "m", "h", "d"):
        raise argparse.ArgumentTypeError(
            f"want a duration such as 90s, 15m, 2h or 3d, got {value!r}"
        )
    return _moment(value)


def _share(value: str) -> float:
    """An argparse type: a share from 0 to 1."""
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"want a number from 0 to 1, got {value!r}")
    return share


def _milliseconds(value: str) -> int:
    """An argparse type: a whole number of milliseconds, 0 or more."""
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"want a whole number of milliseconds, got {value!r}")
    return int(value)


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    from .console import server
    from .console.security import check_binding

    check_binding(args.host, settings.console_token)  # a refusal comes alone, before the Redis
    return server.run(_located(settings), args.host, args.port, read_only=args.read_only)


# The largest --limit: more than any Redis here holds, and within what Redis and Python
# take as a count (a larger one would come back as a confusing Redis error).
MAX_COUNT = 1_000_000_000


def _count(value: str) -> int:
    """An argparse type: a whole number from 1 to MAX_COUNT."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"want a whole number of at least 1 and at most {MAX_COUNT}, got {value!r}"
        )
    return number


def _type_pattern(value: str) -> str:
    """An argparse type: an event type pattern, as `@on` takes them."""
    try:
        check_type_pattern(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _moment(value: str) -> float:
    """An argparse type: a point in time (see `event_filters.parse_moment`)."""
    try:
        return event_filters.parse_moment(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_filter_options(parser: argparse.ArgumentParser) -> None:
    """--type, --handler, --since and --until, read by `_event_filter`."""
    parser.add_argument(
        "--type", type=_type_pattern, help="only this type: order.created, order.* or *"
    )
    parser.add_argument(
        "--handler", metavar="NAME",
        help="only events this handler failed on in their latest run "
        "(its full name or the end of it: reserve_seats, orders.reserve_seats)",
    )  # fmt: skip
    parser.add_argument(
        "--since", type=_moment, metavar="WHEN",
        help="received at or after WHEN: unix seconds, an ISO date/time (UTC unless it "
        "says otherwise) or a time ago (90s, 15m, 2h, 3d)",
    )  # fmt: skip
    parser.add_argument("--until", type=_moment, metavar="WHEN", help="received before WHEN")


# --- lanes (`lanes.py`) ---


def cmd_lanes_list(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(_located(settings))
    infos = lanes.list_lanes(connection, blocked_only=args.blocked, limit=args.limit)
    if not infos:
        print("no blocked lanes" if args.blocked else "no lane has events waiting")
        return 0
    now = datetime.now(UTC)
    rows = [("lane", "waiting", "head", "state")]
    for info in infos:
        if info.blocked_since is not None:
            since = datetime.fromtimestamp(info.blocked_since, UTC)
            state = f"blocked {_ago(since, now)}"
        else:
            state = "running" if info.holder else "waiting"
        rows.append((info.lane, str(info.waiting), info.head, state))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print("\n".join("  ".join(map(str.ljust, row, widths)).rstrip() for row in rows))
    return 0


def cmd_lanes_skip(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(_located(settings))
    skipped = lanes.skip_head(connection, args.lane, force=args.force)
    if skipped is None:
        print(f"error: {args.lane}: its first event is running (--force)", file=sys.stderr)
        return 1
    if not skipped:
        print(f"error: lane {args.lane} has no event waiting", file=sys.stderr)
        return 1
    print(f"skipped {skipped} in {args.lane}; the next event runs")
    return 0


def _add_lanes_commands(commands) -> None:
    lns = commands.add_parser("lanes", help="per-order lanes: list them, skip a blocked head")
    lns_commands = lns.add_subparsers(dest="lanes_command", required=True, metavar="ACTION")
    llist = lns_commands.add_parser("list", help="lanes with events waiting, blocked first")
    llist.add_argument("--blocked", action="store_true", help="only the blocked lanes")
    llist.add_argument(
        "--limit", type=_count, default=50, metavar="N", help="at most N (default 50)"
    )
    llist.set_defaults(func=cmd_lanes_list)
    lskip = lns_commands.add_parser(
        "skip", help="drop a lane's first event (its handler is not run) and go on"
    )
    lskip.add_argument("lane", help="the lane, as `lanes list` prints it")
    lskip.add_argument("--force", action="store_true", help="even while the head is running")
    lskip.set_defaults(func=cmd_lanes_skip)


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
    rep.add_argument(
        "--url", help="receiver URL (default: the running dev's, else "
        f"{DEFAULT_URL}<webhook path>)",
    )  # fmt: skip
    rep.add_argument("--secret", action="append", help="sign with this secret instead")
    rep.add_argument("--fresh-ids", action="store_true", help="give every event a new id")
    rep.add_argument(
        "--copies", type=_count, default=1, metavar="N", help="send each event N times"
    )
    rep.add_argument("--shuffle", action="store_true", help="send in random order")
    rep.add_argument("--seed", type=int, help="seed for --shuffle, to repeat an order")
    rep.add_argument("--concurrency", type=_count, default=1, metavar="N", help="parallel senders")
    rep.add_argument("--rate", type=float, default=0.0, help="at most this many requests/s")
    rep.add_argument(
        "--max-attempts", type=_count, default=6, metavar="N",
        help="attempts per event on 429/409/5xx/network errors, with exponential backoff",
    )  # fmt: skip
    rep.add_argument("--dry-run", action="store_true", help="print curl commands, send nothing")
    rep.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    rep.set_defaults(func=cmd_replay)

    secrets = commands.add_parser(
        "secrets", help="each signing secret's fingerprint and when it last verified a delivery"
    )
    secrets.set_defaults(func=cmd_secrets)

    work = commands.add_parser("worker", help="run an RQ worker on the project's queues")
    work.add_argument(
        "--queue", action="append", choices=QUEUES,
        help="listen on this queue only (repeatable; default: all, orders first)",
    )  # fmt: skip
    work.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    work.add_argument(
        "--processes", type=_count, default=1, metavar="N",
        help="run N worker processes under this one, replacing any that dies (default 1)",
    )  # fmt: skip
    work.set_defaults(func=cmd_worker)

    dev = commands.add_parser("dev", help="web + worker (+ embedded Redis) with auto-reload")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--no-reload", action="store_true", help="do not restart on code changes")
    dev.add_argument(
        "--sandbox", action="store_true",
        help="also run the API sandbox; the worker's API client talks to it",
    )  # fmt: skip
    dev.set_defaults(func=cmd_dev)

    sbx = commands.add_parser(
        "sandbox", help="serve the Tickets Wholesale API from memory, for dev and tests"
    )
    sbx.add_argument("--host", default="127.0.0.1")
    sbx.add_argument("--port", type=int, default=8100)
    sbx.add_argument(
        "--webhook-url", metavar="URL", help="POST signed webhooks here (default: none)"
    )
    sbx.add_argument(
        "--rate-limit", type=_count, default=100, metavar="R",
        help="requests per second per client; past it 429 (default 100)",
    )  # fmt: skip
    sbx.add_argument(
        "--fail-rate", type=_share, default=0.0, metavar="F",
        help="share of requests answered 500/503 (default 0)",
    )  # fmt: skip
    sbx.add_argument("--fail-token", action="store_true", help="inject faults on the token too")
    sbx.add_argument("--latency-ms", type=_milliseconds, default=0, metavar="MS")
    sbx.add_argument(
        "--latency-jitter-ms", type=_milliseconds, default=0, metavar="MS",
        help="plus a random 0..MS on each request",
    )  # fmt: skip
    sbx.add_argument(
        "--token-ttl", type=_count, default=3600, metavar="S", help="token lifetime (default 3600)"
    )
    sbx.add_argument("--seed", type=int, help="seed the fault and latency draws")
    # Webhooks that never arrive, for `reconcile` (docs/reconcile.md).
    sbx.add_argument(
        "--webhook-loss", type=_share, default=0.0, metavar="FRACTION",
        help="share of webhooks never sent (default 0)",
    )  # fmt: skip
    sbx.add_argument(
        "--webhook-retry-window", type=float, default=0.0, metavar="SECONDS",
        help="give up on a webhook this long after its first attempt (default: after 6 attempts)",
    )  # fmt: skip
    sbx.add_argument(
        "--public", action="store_true",
        help="allow a --host beyond this machine (with your own TW_API_CLIENT_SECRET)",
    )  # fmt: skip
    sbx.set_defaults(func=cmd_sandbox)

    evs = commands.add_parser("events", help="list, show and export received events")
    evs_commands = evs.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    lst = evs_commands.add_parser("list", help="recent events with their status")
    lst.add_argument("--status", choices=event_status.STATUSES, help="only this status")
    lst.add_argument("--limit", type=_count, default=20, metavar="N", help="at most N (default 20)")
    lst.set_defaults(func=cmd_events_list)
    show = evs_commands.add_parser("show", help="one event: status, attempts, last error")
    show.add_argument("id", help="the event id (evt_...)")
    show.add_argument("--body", action="store_true", help="print the event itself too")
    show.set_defaults(func=cmd_events_show)
    exp = evs_commands.add_parser(
        "export", help="write captured events as JSON Lines, which replay reads"
    )
    exp.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    _add_filter_options(exp)
    exp.add_argument("--limit", type=_count, metavar="N", help="only the N most recent")
    exp.set_defaults(func=cmd_events_export)

    failed = commands.add_parser("failed", help="events whose handlers failed every retry")
    failed_commands = failed.add_subparsers(dest="failed_command", required=True, metavar="ACTION")
    flist = failed_commands.add_parser("list", help="failed events, newest first")
    flist.add_argument(
        "--limit", type=_count, default=50, metavar="N", help="at most N (default 50)"
    )
    _add_filter_options(flist)
    flist.set_defaults(func=cmd_failed_list)
    fretry = failed_commands.add_parser(
        "retry", help="requeue failed events; handlers that succeeded are not run again"
    )
    fretry.add_argument("ids", nargs="*", metavar="ID", help="event ids to requeue")
    fretry.add_argument("--all", action="store_true", help="requeue every failed event")
    _add_filter_options(fretry)
    fretry.add_argument(
        "--dry-run", action="store_true", help="print how many and which; requeue nothing"
    )
    fretry.set_defaults(func=cmd_failed_retry)

    rec = commands.add_parser(
        "reconcile", help="deliver the order changes whose webhooks never arrived (one pass)"
    )
    rec.add_argument(
        "--since", type=_time_ago, metavar="DURATION",
        help="walk the orders changed this long ago and since (90s, 15m, 2h, 3d) instead of "
        "from the watermark",
    )  # fmt: skip
    rec.add_argument("--dry-run", action="store_true", help="print what would be fed; feed nothing")
    rec.set_defaults(func=cmd_reconcile)

    con = commands.add_parser("console", help="a web page to see, search and recover events")
    con.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other needs TW_CONSOLE_TOKEN)",
    )  # fmt: skip
    con.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    con.add_argument("--read-only", action="store_true", help="show, but never change anything")
    con.set_defaults(func=cmd_console)
    _add_lanes_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_env()
        logs.configure(settings.log_format, settings.log_level)
        return args.func(args, settings)
    except FileNotFoundError as exc:
        print(f"error: no such file or folder: {exc.filename}", file=sys.stderr)
        return 2
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        print(f"error: cannot reach Redis ({exc}); check REDIS_URL", file=sys.stderr)
        return 2
    except redis.ResponseError as exc:
        # Connected, then refused: most often a database number or a user REDIS_URL gets wrong.
        print(f"error: Redis refused ({exc}); check REDIS_URL", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
