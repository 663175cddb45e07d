"""Sample price handler: replace the log line with your own repricing."""

import logging

from . import Event, on

log = logging.getLogger(__name__)


@on("price.updated")
def log_price(event: Event) -> None:
    update = event.object
    price, previous = update.get("price", {}), update.get("previousPrice", {})
    log.info(
        "%s %s: listing %s (%s) %s -> %s %s",
        event.type, event.id, update.get("listingId"), update.get("section"),
        previous.get("amount"), price.get("amount"), price.get("currency"),
    )  # fmt: skip
