"""A handler module for the API client's budget figures: one API call per price event.

Loaded by the `worker` command through `TW_HANDLER_MODULES=api_call_handlers`; the package
name comes from `BENCH_PACKAGE`, so any bake of the template can be measured.
"""

import importlib
import os

handlers = importlib.import_module(
    os.environ.get("BENCH_PACKAGE", "tw_webhook_receiver") + ".handlers"
)


@handlers.on("price.updated")
def call_api(event) -> None:
    handlers.api.health()
