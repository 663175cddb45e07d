"""Calling the Tickets Wholesale API from handlers, with exactly-once effects.

    from . import Event, api, on

    @on("order.created")
    def confirm(event: Event) -> None:
        order = api.get_order(event.object["id"])

`api` is the process's one `Client` (`shared.py`), built from `TW_API_*` settings on first
use. The modules, each with one job: `client` (calls, retries, helpers), `token` (OAuth
tokens shared through Redis), `budget` (the rate limit shared through Redis), `retries`
(when and how long to wait), `idempotency` (keys that repeat when a handler re-runs) and
`errors` (`ApiError`). See docs/api-client.md.
"""

from .client import Client
from .errors import ApiError
from .idempotency import handler_run
from .shared import SharedClient, api, client_from_settings

__all__ = ["ApiError", "Client", "SharedClient", "api", "client_from_settings", "handler_run"]
