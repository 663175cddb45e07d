"""The sandbox's state, in memory: the catalogue's seats and prices, and the orders.

One lock guards everything, so concurrent requests see the seats of a listing go down
exactly once per order. Each change that the real API announces with a webhook is passed
to `emit(type, object)` while the lock is held, so events leave in the order the changes
happened. Refusals raise `http_errors.HttpError` with the status and code the API
answers with.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..http_errors import HttpError
from . import catalogue, paging
from .catalogue import Listing, money

MAX_ITEMS_PER_ORDER = 20
# action -> (states it may start from, state it leads to); the event is "order.<state>".
TRANSITIONS = {
    "confirm": (("created",), "confirmed"),
    "fulfill": (("confirmed",), "fulfilled"),
    "cancel": (("created", "confirmed"), "cancelled"),
    "refund": (("fulfilled",), "refunded"),
}


@dataclass
class Order:
    id: str
    client_id: str
    event_id: str
    items: list[dict]
    total: int
    status: str = "created"
    created_at: int = field(default_factory=lambda: int(time.time()))
    updated_at: int = 0  # set to created_at on creation, then at every change of status

    def __post_init__(self) -> None:
        self.updated_at = self.updated_at or self.created_at

    @property
    def changed(self) -> tuple[int, str]:
        """Where the order sorts in the lists: by `updatedAt`, then id."""
        return self.updated_at, self.id

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "eventId": self.event_id,
            "items": [dict(item) for item in self.items],
            "total": money(self.total),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


def _no_events(event_type: str, obj: dict) -> None:
    pass


class Store:
    def __init__(
        self, emit: Callable[[str, dict], None] = _no_events, clock: Callable[[], float] = time.time
    ):
        self.emit = emit
        self.clock = clock  # stamps `createdAt` and `updatedAt` (a test moves its own)
        self._lock = threading.Lock()
        self._listings = catalogue.seed()
        self._by_id = {listing.id: listing for listing in self._listings}
        self._orders: dict[str, Order] = {}  # in creation order

    # --- inventory ---------------------------------------------------------------------

    def search(
        self, event_id: str, section: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict], str | None]:
        """Listings of a show with seats left, in catalogue order; one page of them."""

        def keep(listing: Listing) -> bool:
            wanted = section is None or listing.section.lower() == section.lower()
            return listing.event_id == event_id and wanted and listing.available > 0

        with self._lock:
            found, next_cursor = paging.page(self._listings, _id, limit, cursor, keep)
            return [listing.to_json() for listing in found], next_cursor

    def set_price(self, listing_id: str, amount: int) -> dict:
        """Change a listing's price and announce it with `price.updated`."""
        with self._lock:
            listing = self._listing(listing_id)
            previous, listing.price = listing.price, amount
            update = {
                "listingId": listing.id,
                "eventId": listing.event_id,
                "section": listing.section,
                "row": listing.row,
                "price": money(amount),
                "previousPrice": money(previous),
                "updatedAt": int(self.clock()),
            }
            if amount != previous:
                self.emit("price.updated", update)
            return update

    def seats_left(self, event_id: str) -> int:
        with self._lock:
            return sum(x.available for x in self._listings if x.event_id == event_id)

    def _listing(self, listing_id: str) -> Listing:
        listing = self._by_id.get(listing_id)
        if listing is None:
            raise HttpError(404, "listing_not_found", f"No listing {listing_id!r}.")
        return listing

    # --- orders --------------------------------------------------------------------------

    def create_order(self, client_id: str, items: list[tuple[str, int]]) -> dict:
        """Take the seats of every item at today's price, or none of them."""
        with self._lock:
            listings = []
            for listing_id, quantity in items:
                listing = self._by_id.get(listing_id)
                if listing is None:
                    raise HttpError(422, "unknown_listing", f"No listing {listing_id!r}.")
                if quantity > listing.available:
                    raise HttpError(
                        422,
                        "insufficient_seats",
                        f"Listing {listing_id} has {listing.available} seat(s) left, "
                        f"{quantity} asked.",
                    )
                listings.append(listing)
            if len({listing.event_id for listing in listings}) > 1:
                raise HttpError(422, "mixed_events", "All items of an order must be of one show.")
            lines = []
            for listing, (_, quantity) in zip(listings, items, strict=True):
                listing.available -= quantity
                lines.append({
                    "listingId": listing.id, "section": listing.section, "row": listing.row,
                    "quantity": quantity, "unitPrice": money(listing.price),
                })  # fmt: skip
            order = Order(
                id="ord_" + os.urandom(8).hex(),
                client_id=client_id,
                event_id=listings[0].event_id,
                items=lines,
                total=sum(line["unitPrice"]["amount"] * line["quantity"] for line in lines),
                created_at=int(self.clock()),
            )
            self._orders[order.id] = order
            self.emit("order.created", order.to_json())
            return order.to_json()

    def add_sample_orders(self, client_id: str) -> None:
        """Hold the sample events' orders, placed by `client_id` (announced to no one): a
        replayed sample's order can then be fetched."""
        with self._lock:
            for order_id, (listing_id, quantity), created in catalogue.SAMPLE_ORDERS:
                listing = self._by_id[listing_id]
                listing.available -= quantity
                line = {
                    "listingId": listing.id, "section": listing.section, "row": listing.row,
                    "quantity": quantity, "unitPrice": money(listing.price),
                }  # fmt: skip
                self._orders[order_id] = Order(
                    order_id, client_id, listing.event_id, [line], listing.price * quantity,
                    created_at=created,
                )  # fmt: skip

    def order(self, client_id: str, order_id: str) -> dict:
        with self._lock:
            return self._order(client_id, order_id).to_json()

    def orders(
        self,
        client_id: str,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        updated_since: int | None = None,
    ) -> tuple[list[dict], str | None]:
        """The client's orders, one page of them: newest change first; or, given
        `updated_since`, those changed at or after it, oldest change first (the order a
        reconciler walks them in). Both by `updatedAt`, then id."""

        def keep(order: Order) -> bool:
            fresh = updated_since is None or order.updated_at >= updated_since
            return order.client_id == client_id and status in (None, order.status) and fresh

        with self._lock:
            ordered = sorted(self._orders.values(), key=_changed, reverse=updated_since is None)
            found, next_cursor = paging.keyset_page(
                ordered, _changed, limit, cursor, keep, descending=updated_since is None
            )
            return [order.to_json() for order in found], next_cursor

    def transition(self, client_id: str, order_id: str, action: str) -> dict:
        """Confirm, fulfill or cancel an order; a cancelled order's seats go back on sale."""
        sources, target = TRANSITIONS[action]
        with self._lock:
            order = self._order(client_id, order_id)
            if order.status not in sources:
                raise HttpError(
                    422, "invalid_state", f"Order {order_id} is {order.status}; cannot {action}."
                )
            if target == "cancelled":
                for item in order.items:
                    self._by_id[item["listingId"]].available += item["quantity"]
            order.status, order.updated_at = target, int(self.clock())
            self.emit(f"order.{target}", order.to_json())
            return order.to_json()

    def order_count(self) -> int:
        with self._lock:
            return len(self._orders)

    def _order(self, client_id: str, order_id: str) -> Order:
        order = self._orders.get(order_id)
        if order is None or order.client_id != client_id:
            raise HttpError(404, "order_not_found", f"No order {order_id!r}.")
        return order


def _id(item: Listing | Order) -> str:
    return item.id


def _changed(order: Order) -> tuple[int, str]:
    return order.changed
