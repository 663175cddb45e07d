"""Sample order handlers: replace the log lines with your own bookkeeping."""

import logging

from . import Event, on

log = logging.getLogger(__name__)


@on("order.*")
def log_order(event: Event) -> None:
    order = event.object
    seats = sum(item.get("quantity", 0) for item in order.get("items", []))
    total = order.get("total", {})
    log.info(
        "%s %s: order %s is %s, %d seat(s), %s %s",
        event.type, event.id, order.get("id"), order.get("status"), seats,
        total.get("amount"), total.get("currency"),
    )  # fmt: skip
