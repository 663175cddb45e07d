"""Which failures are the person's to fix, and how a command reports them.

A command refused for its settings (`ConfigError`) or for what was typed (`UsageError`),
or that cannot reach or use its Redis, prints one line, `error: ...`, and exits 2: the
status that also tells `worker --processes` to stop every worker, since starting one again
cannot help. Any other exception is a bug: it keeps its traceback, and Python exits 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any

import redis

from ..config import ConfigError

# The exit status of a command refused for its settings or its input (argparse's too).
USAGE = 2
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


class UsageError(Exception):
    """What the person typed cannot be done: a file that is not there or not events, an
    option the command refuses. The message says what, in one line."""


def open_named(path: str, mode: str = "rb") -> IO[Any]:
    """Open a file the person named: one that is not there is theirs to fix."""
    try:
        return open(path, mode)
    except FileNotFoundError:
        raise UsageError(f"no such file or folder: {path}") from None


def exit_status(command: Callable[[], int | None]) -> int:
    """Run `command` and return its exit status, reporting the failures above in one line.
    Other exceptions propagate, with their traceback."""
    try:
        status = command()
    except (ConfigError, UsageError) as exc:
        return _refused(str(exc))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return _refused(f"cannot reach Redis ({exc}); check REDIS_URL")
    except redis.ResponseError as exc:
        # Connected, then refused: most often a database number or a user REDIS_URL gets wrong.
        return _refused(f"Redis refused ({exc}); check REDIS_URL")
    except KeyboardInterrupt:
        return INTERRUPTED
    return 0 if status is None else status


def _refused(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return USAGE
