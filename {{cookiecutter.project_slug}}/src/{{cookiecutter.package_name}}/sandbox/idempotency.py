"""`Idempotency-Key` on POST and PUT, with the codes of the IETF draft
"The Idempotency-Key HTTP Header Field":

- a key seen before with the same request (method, path and JSON body) gets the first
  response back, status and body, with `Idempotent-Replayed: true`;
- the same key with another request is refused with 422 (`idempotency_key_reused`);
- the same key while its first request is still running is refused with 409
  (`idempotency_key_in_use`): a request holds its key from the moment it is let through
  until its answer is stored;
- keys belong to one client, and a record is forgotten after `ttl` seconds.

Only the answers of requests that were carried out are stored (2xx, and a 500 raised while
running). Requests refused on validation, rate-limited or hit by an injected fault release
the key, so the client's retry runs afresh (as Stripe documents for its own keys).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..http_errors import HttpError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    content_type: str


@dataclass
class _Record:
    fingerprint: str
    expires: float
    response: StoredResponse | None = None  # None while the first request runs


def parse_key(value: str) -> str:
    """The key from the header: a structured-field string (`"abc"`), or a bare token."""
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise HttpError(
            400,
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
        )
    return key


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same": method, path and the body (JSON compared as
    data, so key order and spacing do not matter)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(f"{method} {path}\n".encode() + canonical).hexdigest()


class IdempotencyRecords:
    """The records of one sandbox, keyed by (client id, key)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()

    def begin(self, client_id: str, key: str, request_fingerprint: str) -> StoredResponse | None:
        """Take the key for a new request (None: run it, then `finish` or `release`), or
        return the stored response to replay. Raises 409 / 422 as the draft says."""
        with self._lock:
            now = self.clock()
            self._forget_expired(now)
            record = self._records.get((client_id, key))
            if record is None:
                self._records[client_id, key] = _Record(request_fingerprint, now + self.ttl)
                return None
            if record.fingerprint != request_fingerprint:
                raise HttpError(
                    422,
                    "idempotency_key_reused",
                    f"This {HEADER} was used with another request; use a new key.",
                )
            if record.response is None:
                raise HttpError(
                    409,
                    "idempotency_key_in_use",
                    f"A request with this {HEADER} is still running; retry shortly.",
                )
            return record.response

    def finish(self, client_id: str, key: str, response: StoredResponse) -> None:
        with self._lock:
            record = self._records.get((client_id, key))
            if record is not None:
                record.response = response

    def release(self, client_id: str, key: str) -> None:
        """Forget a key whose request was not carried out, so a retry runs afresh."""
        with self._lock:
            self._records.pop((client_id, key), None)

    def _forget_expired(self, now: float) -> None:
        expired = [k for k, record in self._records.items() if record.expires <= now]
        for k in expired:
            del self._records[k]
