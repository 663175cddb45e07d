"""Which Redis, and which receiver, a command talks to when not told."""

from __future__ import annotations

import dataclasses
import sys

from ..config import Settings, load_environment
from ..connection import describe
from ..dev import state

DEFAULT_URL = "http://127.0.0.1:8000"


def located(settings: Settings) -> Settings:
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
            url = state.running_dev_redis()
        except state.StaleState as exc:
            source += f", ignoring {exc}"
        else:
            if url:
                settings = dataclasses.replace(settings, redis_url=url)
                source = f"REDIS_URL is unset: the running dev's, from {state.STATE_FILE}"
    print(f"Redis: {describe(settings)} ({source})", file=sys.stderr)
    return settings


def receiver_url(settings: Settings, quiet: bool = False) -> str:
    """Where `replay` sends without --url: the receiver of the `dev` running from this
    directory (its port may not be the default), else the default; named on stderr."""
    base, source = state.running_dev_receiver(), f"the running dev's, from {state.STATE_FILE}"
    if base is None:
        base, source = DEFAULT_URL, "the default; --url to change"
    if not quiet:
        print(f"Receiver: {base}{settings.webhook_path} ({source})", file=sys.stderr)
    return base + settings.webhook_path
