"""Sample order handlers: replace the log lines with your own bookkeeping."""

import logging

from . import ApiError, Event, api, on

log = logging.getLogger(__name__)
_told_to_configure = []  # whether this process already said how to set up the API


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


@on("order.created")
def fetch_order(event: Event) -> None:
    """Fetch the new order from the API: where a real handler would start its work."""
    order_id = event.object.get("id")
    if not order_id:
        return
    if not api.configured:
        if not _told_to_configure:
            _told_to_configure.append(True)
            log.warning(
                "%s %s: order %s not fetched: set TW_API_CLIENT_ID and TW_API_CLIENT_SECRET "
                "(or run `dev --sandbox`) to call the Tickets Wholesale API",
                event.type, event.id, order_id,
            )  # fmt: skip
        return
    try:
        order = api.get_order(order_id)
    except ApiError as exc:
        if exc.status != 404:
            raise  # retried with the handler's backoff
        log.info("%s %s: order %s is unknown to the API", event.type, event.id, order_id)
        return
    log.info(
        "%s %s: fetched order %s from the API: %s, %d item(s)",
        event.type, event.id, order["id"], order.get("status"), len(order.get("items", [])),
    )  # fmt: skip
