"""The `TW-Signature` header: parse it, verify it, and make one.

The sender signs every delivery with `t=<unix seconds>,v1=<hex>`, where
`v1 = hex(HMAC-SHA256(secret, "<t>." + raw body))`. During a secret rotation it sends one
`v1=` per secret; schemes other than `v1` are ignored. These are pure functions with no
web framework in sight, so they can be used from tests, scripts and other apps alike.
Every failure raises `SignatureError`, whose `code` is stable and whose message says
exactly what was wrong. `check` also says which secret matched, and `fingerprint` names a
secret in metrics and commands without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass

HEADER = "TW-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_SIGNATURE_LENGTH = hashlib.sha256().digest_size * 2
# More than this many digits cannot be a unix time of this era, and keeps int() cheap.
_MAX_TIMESTAMP_DIGITS = 12
# Hashed ahead of a secret for its fingerprint, so the fingerprint is no plain SHA-256 of
# the secret that could be matched against one computed elsewhere.
_FINGERPRINT_PREFIX = b"tw-webhook-signing-secret:"


class SignatureError(Exception):
    """The signature header is missing, malformed, stale, or matches no secret."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ParsedHeader:
    timestamp: int
    signatures: tuple[str, ...]


def parse_header(header: str | None) -> ParsedHeader:
    """Split a header value into its timestamp and its `v1` signatures (lower-case hex)."""
    if header is None or not header.strip():
        raise SignatureError("signature_missing", f"The {HEADER} header is missing or empty.")
    if not header.isascii():
        raise SignatureError("signature_malformed", f"The {HEADER} header is not ASCII.")
    timestamp: str | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise SignatureError(
                "signature_malformed", f"The {HEADER} header has an entry without key=value."
            )
        if key == "t":
            if timestamp is not None:
                raise SignatureError("signature_malformed", f"The {HEADER} header has two t=.")
            timestamp = value
        elif key == SCHEME:
            if len(value) != _SIGNATURE_LENGTH or not _HEX_DIGITS.issuperset(value):
                raise SignatureError(
                    "signature_malformed",
                    f"A v1 signature must be {_SIGNATURE_LENGTH} hexadecimal characters.",
                )
            signatures.append(value.lower())
    if timestamp is None:
        raise SignatureError("signature_malformed", f"The {HEADER} header has no t= timestamp.")
    if not timestamp.isdigit() or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise SignatureError("signature_malformed", "The t= timestamp must be whole unix seconds.")
    if not signatures:
        raise SignatureError("signature_malformed", f"The {HEADER} header has no v1= signature.")
    return ParsedHeader(int(timestamp), tuple(signatures))


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the hex `v1` signature of `body` signed at `timestamp` with `secret`."""
    mac = hmac.new(secret.encode("utf-8"), b"%d." % timestamp, hashlib.sha256)
    mac.update(body)
    return mac.hexdigest()


def fingerprint(secret: str) -> str:
    """A short name for a secret: 8 hex digits of a SHA-256 over it. It tells secrets
    apart (in metrics, logs and the `secrets` command) and cannot be turned back into the
    secret."""
    return hashlib.sha256(_FINGERPRINT_PREFIX + secret.encode("utf-8")).hexdigest()[:8]


def sign(body: bytes, secrets: str | Iterable[str], timestamp: int | None = None) -> str:
    """Return a header value signing `body` with each secret, as the sender does."""
    if isinstance(secrets, str):
        secrets = [secrets]
    if timestamp is None:
        timestamp = int(time.time())
    parts = [f"t={timestamp}"]
    parts += [f"{SCHEME}={compute_signature(s, timestamp, body)}" for s in secrets]
    return ",".join(parts)


@dataclass(frozen=True)
class Verified:
    """What a successful check found."""

    timestamp: int  # the signed t=
    secret_index: int  # position in the secrets given (from 0) of the first that matched


def check(
    header: str | None,
    body: bytes,
    secrets: Iterable[str],
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> Verified:
    """Check `header` against the raw `body`; say when it was signed and with which secret.

    Accepts when any `v1` matches any secret (constant-time compare) and the timestamp is
    less than `tolerance` seconds from `now`, in either direction, as the API's reference
    check `abs(now - t) < 300` does. A header signed with several of the secrets names the
    first of them: during a rotation, with the new secret listed first, deliveries credit
    the old one only while the sender still signs with it alone.
    """
    parsed = parse_header(header)
    if now is None:
        now = time.time()
    if abs(now - parsed.timestamp) >= tolerance:
        raise SignatureError(
            "timestamp_out_of_tolerance",
            f"The signature timestamp is {int(now - parsed.timestamp)} s from now; "
            f"the limit is {tolerance} s.",
        )
    expected = [compute_signature(s, parsed.timestamp, body) for s in secrets]
    # Compare every pair without stopping early, so timing reveals nothing.
    matched = -1
    for index in reversed(range(len(expected))):
        for candidate in parsed.signatures:
            if hmac.compare_digest(candidate, expected[index]):
                matched = index
    if matched < 0:
        raise SignatureError(
            "signature_mismatch", "No v1 signature matches the body with a configured secret."
        )
    return Verified(parsed.timestamp, matched)


def verify(
    header: str | None,
    body: bytes,
    secrets: Iterable[str],
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """`check`, returning only the signed timestamp."""
    return check(header, body, secrets, tolerance, now).timestamp
