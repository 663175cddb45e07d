"""A handler module for the worker-processes figures: one `@on("*")` handler that waits.

It stands for a handler waiting on a remote API: `BENCH_HANDLER_SLEEP_MS` (default 50)
of `time.sleep`, which holds no core, as a network wait would not.
"""

import importlib
import os
import time

on = importlib.import_module(
    os.environ.get("BENCH_PACKAGE", "tw_webhook_receiver") + ".handlers"
).on
SLEEP = float(os.environ.get("BENCH_HANDLER_SLEEP_MS", "50")) / 1000


@on("*")
def wait_like_an_api_call(event) -> None:
    time.sleep(SLEEP)
