"""Which signing secrets still verify deliveries: what the `secrets` command shows before an old
secret is dropped from `TW_WEBHOOK_SECRETS`.

Read from what intake keeps per secret fingerprint (`intake.secrets_last_verified`), so it
covers every receiver sharing this Redis; the secrets themselves are never shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from .intake import secrets_last_verified
from .signature import fingerprint


@dataclass(frozen=True)
class SecretUse:
    """One signing secret, named without revealing it, and when it last verified a
    delivery (by Redis' clock, on any receiver sharing this Redis)."""

    position: int | None  # in TW_WEBHOOK_SECRETS, from 1; None: not configured here
    fingerprint: str  # `signature.fingerprint(secret)`
    last_verified: datetime | None  # None: never, as far as this Redis remembers


def secret_usage(connection: redis.Redis, secrets: Iterable[str]) -> list[SecretUse]:
    """The configured secrets in order, then any other secret that verified deliveries on
    a receiver sharing this Redis (one still configured elsewhere), most recent first.

    A secret can go once its `last_verified` is older than the sender's retry window.
    """
    used = secrets_last_verified(connection)

    def when(print_: str) -> datetime | None:
        stamp = used.pop(print_, None)
        return datetime.fromtimestamp(stamp, UTC) if stamp is not None else None

    configured = [
        SecretUse(position, print_, when(print_))
        for position, print_ in enumerate(map(fingerprint, secrets), 1)
    ]
    others = sorted(used.items(), key=lambda item: item[1], reverse=True)
    return configured + [SecretUse(None, print_, when(print_)) for print_, _ in others]
