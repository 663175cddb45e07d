"""How the other commands find the Redis that `dev` embeds, and its receiver.

While `dev` runs, it keeps a small file in the working directory (the project's, where
`.env` is read too) naming its own pid, the receiver's URL and, when it runs its own
Redis, that Redis, and removes it on exit. The commands that read Redis (`events`,
`failed`, `secrets`, `worker`, `console`) read it when `REDIS_URL` is unset, and `replay`
when no `--url` is given, so that a second terminal reaches what `dev` runs without
copying a URL or a port by hand. A file left behind by a `dev` that was killed is
recognised as stale: its process is gone, or its Redis does not answer.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import redis

STATE_FILE = ".tw-dev-redis.json"  # git-ignored


class StaleState(Exception):
    """The state file is left by a `dev` that is gone; the message names it and says why."""


@contextlib.contextmanager
def published(
    url: str | None, path: str | Path = STATE_FILE, receiver: str | None = None
) -> Iterator[None]:
    """Name `url` as this process's Redis (None: not one of its own) and `receiver` as its
    receiver's base URL in `path` until the block ends."""
    path = Path(path)
    state = {"redisUrl": url, "pid": os.getpid(), "receiverUrl": receiver}
    path.write_text(json.dumps(state) + "\n")
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text())["pid"] == os.getpid():  # not a later dev's
                path.unlink()


def running_dev_redis(path: str | Path = STATE_FILE) -> str | None:
    """The URL of the Redis of the `dev` running now from this directory; None without a
    state file. Raises `StaleState` for a file whose `dev` or Redis is gone."""
    path = Path(path)
    state = _running_state(path)
    url = state.get("redisUrl") if state else None
    if url and not _answers(url):
        raise StaleState(f"{path}, whose Redis does not answer")
    return url


def running_dev_receiver(path: str | Path = STATE_FILE) -> str | None:
    """The base URL of the receiver of the `dev` running now from this directory (e.g.
    http://127.0.0.1:8731); None without a state file, or when it is stale."""
    try:
        state = _running_state(Path(path))
    except StaleState:
        return None
    return state.get("receiverUrl") if state else None


def _running_state(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text())
        pid = int(state["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise StaleState(f"{path}, which is unreadable") from None
    if not _process_exists(pid):
        raise StaleState(f"{path}, left by a dev (pid {pid}) that is no longer running")
    return state


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and the Redis check decides
    return True


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
