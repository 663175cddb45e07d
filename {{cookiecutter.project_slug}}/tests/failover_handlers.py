"""A handler for the failover tests: each run is appended to a file, not to Redis.

The record must outlive whatever Redis loses in a failover, as a partner's database would.
Loaded into real worker processes with `TW_HANDLER_MODULES=failover_handlers`; the file is
`TEST_RUNS_FILE`, and `TEST_HANDLER_SECONDS` makes each run take that long, so that the
workers fall behind the sender and a backlog is in Redis when the primary dies.
"""

import os
import time
from collections import Counter
from pathlib import Path

from {{ cookiecutter.package_name }}.events import Event
from {{ cookiecutter.package_name }}.routing import on


@on("*")
def record(event: Event) -> None:
    time.sleep(float(os.environ.get("TEST_HANDLER_SECONDS", "0")))
    # One short write in append mode: lines of several workers never interleave.
    with open(os.environ["TEST_RUNS_FILE"], "a") as runs:
        runs.write(event.id + "\n")


def runs(path: Path) -> Counter:
    """How often each event id was handled."""
    return Counter(path.read_text().split()) if path.exists() else Counter()
