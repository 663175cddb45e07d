"""Your event handlers.

Every module in this package is imported by the worker, so a new file here is all it
takes to add handlers. A handler is a function taking one `Event`, decorated with the
event types it wants::

    from . import Event, on

    @on("order.created")
    def book_seats(event: Event) -> None:
        order = event.object
        ...

`@on("order.*")` takes a whole family and `@on("*")` every event, including types this
project does not know yet. A handler that raises is retried with exponential backoff;
handlers that already succeeded for that event are not run again. Keep handlers
idempotent anyway: a worker killed between a handler's success and its bookkeeping will
run that handler once more.

`api` calls the Tickets Wholesale API (see docs/api-client.md); its writes carry
idempotency keys that repeat when a handler runs again, so they take effect once::

    from . import Event, api, on

    @on("order.created")
    def fetch(event: Event) -> None:
        order = api.get_order(event.object["id"])
"""

from ..api import ApiError, api
from ..events import Event
from ..routing import on

__all__ = ["ApiError", "Event", "api", "on"]
