"""A handler module for the lanes figures: `noop_handlers`' handler, in a lane per order.

Loaded by the `worker` command through `TW_HANDLER_MODULES=noop_lane_handlers`.
"""

import importlib
import os

on = importlib.import_module(
    os.environ.get("BENCH_PACKAGE", "tw_webhook_receiver") + ".handlers"
).on


@on("*", lane="order")
def noop_in_lane(event) -> None:
    return None
