"""`dev` and `sandbox`: the receiver and the API sandbox on this machine (`dev/`,
docs/local-tools.md, docs/sandbox.md)."""

from __future__ import annotations

import argparse

from ..config import Settings, load_environment
from .arguments import count, milliseconds, share
from .errors import UsageError


def add_commands(commands: argparse._SubParsersAction) -> None:
    dev = commands.add_parser("dev", help="web + worker (+ embedded Redis) with auto-reload")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--no-reload", action="store_true", help="do not restart on code changes")
    dev.add_argument(
        "--sandbox", action="store_true",
        help="also run the API sandbox; the worker's API client talks to it",
    )  # fmt: skip
    dev.set_defaults(func=run_dev)

    sbx = commands.add_parser(
        "sandbox", help="serve the Tickets Wholesale API from memory, for dev and tests"
    )
    sbx.add_argument("--host", default="127.0.0.1")
    sbx.add_argument("--port", type=int, default=8100)
    sbx.add_argument(
        "--webhook-url", metavar="URL", help="POST signed webhooks here (default: none)"
    )
    sbx.add_argument(
        "--rate-limit", type=count, default=100, metavar="R",
        help="requests per second per client; past it 429 (default 100)",
    )  # fmt: skip
    sbx.add_argument(
        "--fail-rate", type=share, default=0.0, metavar="F",
        help="share of requests answered 500/503 (default 0)",
    )  # fmt: skip
    sbx.add_argument("--fail-token", action="store_true", help="inject faults on the token too")
    sbx.add_argument("--latency-ms", type=milliseconds, default=0, metavar="MS")
    sbx.add_argument(
        "--latency-jitter-ms", type=milliseconds, default=0, metavar="MS",
        help="plus a random 0..MS on each request",
    )  # fmt: skip
    sbx.add_argument(
        "--token-ttl", type=count, default=3600, metavar="S", help="token lifetime (default 3600)"
    )
    sbx.add_argument("--seed", type=int, help="seed the fault and latency draws")
    # Webhooks that never arrive, for `reconcile` (docs/reconcile.md).
    sbx.add_argument(
        "--webhook-loss", type=share, default=0.0, metavar="FRACTION",
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
    sbx.set_defaults(func=run_sandbox)


def run_dev(args: argparse.Namespace, settings: Settings) -> int:
    from ..dev import server

    settings.require_secrets()
    return server.run(
        load_environment(), args.host, args.port, reload=not args.no_reload,
        sandbox_webhook_path=settings.webhook_path if args.sandbox else None,
    )  # fmt: skip


def run_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from .. import sandbox

    webhook_secret = settings.require_secrets()[0] if args.webhook_url else None
    try:
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
            webhook_secret=webhook_secret,
            webhook_retry_window=args.webhook_retry_window,
            webhook_loss=args.webhook_loss,
            sample_orders=True,  # so the samples' orders can be fetched
        )
    except ValueError as exc:  # the options' own checks: a value the flags gave is refused
        raise UsageError(str(exc)) from None
    sandbox.serve(
        options, args.host, args.port, lambda line: print(line, flush=True), public=args.public
    )
    return 0
