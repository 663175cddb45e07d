"""A handler module for the drain figures: one `@on("*")` handler that does nothing.

Loaded by the `worker` command through `TW_HANDLER_MODULES=noop_handlers`; the package
name comes from `BENCH_PACKAGE`, so any bake of the template can be measured.
"""

import importlib
import os

on = importlib.import_module(
    os.environ.get("BENCH_PACKAGE", "tw_webhook_receiver") + ".handlers"
).on


@on("*")
def noop(event) -> None:
    return None
