"""The seeded catalogue: three shows, the same every run, so docs and tests can name them.

Show `12345` has 70 listings (one per row) holding 1,040 seats: Floor rows A-J with 20
seats at 125.00 CAD, and Lower 101-110 rows A-F with 14 seats at 89.00 CAD. Show `23456`
has Balcony 201-203 rows A-C with 8 seats at 55.00 CAD; show `34567` has one Floor row of
2 seats at 250.00 CAD, to run out of. Two listings keep the ids the sample events in
`samples/events/` use (`lst_7Qm2Floor`, `lst_4Kp9Lower`), so replayed samples and the
sandbox speak of the same seats; and the `sandbox` command (so `dev --sandbox`) holds the
samples' two orders too (`SAMPLE_ORDERS`), so a handler that fetches the order of a
replayed sample finds it.
"""

from __future__ import annotations

from dataclasses import dataclass

CURRENCY = "CAD"
SAMPLE_LISTING_IDS = {
    ("12345", "Floor", "A"): "lst_7Qm2Floor",
    ("12345", "Lower 104", "F"): "lst_4Kp9Lower",
}
# The orders of the sample events: id, (listing, seats), created at (epoch seconds).
SAMPLE_ORDERS = [
    ("ord_2Nf8Wq5Lk3", ("lst_7Qm2Floor", 2), 1764000000),
    ("ord_5Tb1Xc9Mz7", ("lst_4Kp9Lower", 4), 1764004000),
]

# (show, section, rows, seats per row, price in cents)
_SECTIONS = [
    ("12345", "Floor", "ABCDEFGHIJ", 20, 12500),
    *[("12345", f"Lower {n}", "ABCDEF", 14, 8900) for n in range(101, 111)],
    *[("23456", f"Balcony {n}", "ABC", 8, 5500) for n in range(201, 204)],
    ("34567", "Floor", "A", 2, 25000),
]


@dataclass
class Listing:
    """Seats of one row of one show, sold at one price. Mutable: the store guards it."""

    id: str
    event_id: str
    section: str
    row: str
    available: int
    price: int  # cents

    def to_json(self) -> dict:
        return {
            "listingId": self.id,
            "eventId": self.event_id,
            "section": self.section,
            "row": self.row,
            "available": self.available,
            "price": money(self.price),
        }


def money(amount: int) -> dict:
    return {"amount": amount, "currency": CURRENCY}


def listing_id(event_id: str, section: str, row: str) -> str:
    default = f"lst_{event_id}_{section.replace(' ', '').lower()}_{row.lower()}"
    return SAMPLE_LISTING_IDS.get((event_id, section, row), default)


def seed() -> list[Listing]:
    """A fresh copy of the catalogue, in the order searches page through it."""
    return [
        Listing(listing_id(show, section, row), show, section, row, seats, price)
        for show, section, rows, seats, price in _SECTIONS
        for row in rows
    ]
