"""OAuth 2.0 client credentials as the API's docs show them, and bearer tokens that expire.

`POST /v1/oauth/token` takes JSON (not RFC 6749's form encoding): `client_id`,
`client_secret`, `grant_type: "client_credentials"` and an optional space-separated
`scope`. Without `scope` a token gets every scope; with one, only those, and an endpoint
needing another answers 403 `insufficient_scope`.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..http_errors import HttpError
from .options import SCOPES


@dataclass(frozen=True)
class Token:
    client_id: str
    scopes: frozenset[str]
    expires: float


class Tokens:
    def __init__(
        self, clients: Mapping[str, str], ttl: int, clock: Callable[[], float] = time.time
    ):
        self.clients = dict(clients)
        self.ttl = ttl
        self.clock = clock
        self.issued = 0
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()

    def issue(self, request: object) -> dict:
        """Check a token request's JSON body; answer the token response or raise."""
        if not isinstance(request, dict):
            raise HttpError(400, "invalid_request", "The body must be a JSON object.")
        if request.get("grant_type") != "client_credentials":
            raise HttpError(
                400, "unsupported_grant_type", 'grant_type must be "client_credentials".'
            )
        client_id, secret = request.get("client_id"), request.get("client_secret")
        if not isinstance(client_id, str) or not isinstance(secret, str):
            raise HttpError(400, "invalid_request", "client_id and client_secret are required.")
        known = self.clients.get(client_id)
        if known is None or not hmac.compare_digest(known.encode(), secret.encode()):
            raise HttpError(401, "invalid_client", "Unknown client_id or wrong client_secret.")
        scope = request.get("scope")
        if scope is None:
            scopes = frozenset(SCOPES)
        elif isinstance(scope, str) and scope.split():
            scopes = frozenset(scope.split())
            unknown = sorted(scopes - set(SCOPES))
            if unknown:
                raise HttpError(
                    400,
                    "invalid_scope",
                    f"Unknown scope {unknown[0]!r}; known: {' '.join(SCOPES)}.",
                )
        else:
            raise HttpError(400, "invalid_scope", "scope must be space-separated scope names.")
        access_token = "tok_" + os.urandom(16).hex()
        with self._lock:
            now = self.clock()
            # Expired tokens are kept one more lifetime, to be answered `token_expired`.
            self._tokens = {t: v for t, v in self._tokens.items() if v.expires + self.ttl > now}
            self._tokens[access_token] = Token(client_id, scopes, now + self.ttl)
            self.issued += 1
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.ttl,
            "scope": " ".join(s for s in SCOPES if s in scopes),
        }

    def client_of(self, authorization: str | None) -> Token | None:
        """The valid token an `Authorization: Bearer ...` header names, if any."""
        token = self._lookup(authorization)
        return token if token is not None and token.expires > self.clock() else None

    def authenticate(self, authorization: str | None, scope: str | None) -> Token:
        """The token of a request, which must carry `scope` (when given); else 401 / 403."""
        if not _bearer(authorization):
            raise HttpError(401, "missing_token", "Send Authorization: Bearer <access_token>.")
        token = self._lookup(authorization)
        if token is None:
            raise HttpError(401, "invalid_token", "The access token is not one this API issued.")
        if token.expires <= self.clock():
            raise HttpError(401, "token_expired", "The access token has expired; get a new one.")
        if scope is not None and scope not in token.scopes:
            raise HttpError(403, "insufficient_scope", f"This call needs the {scope} scope.")
        return token

    def _lookup(self, authorization: str | None) -> Token | None:
        with self._lock:
            return self._tokens.get(_bearer(authorization))


def _bearer(authorization: str | None) -> str:
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
