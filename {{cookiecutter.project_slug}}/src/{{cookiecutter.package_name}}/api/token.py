"""OAuth 2.0 client credentials, one token for every worker process.

The API's token request is JSON (`POST /v1/oauth/token` with `client_id`, `client_secret`,
`grant_type` and `scope`), not RFC 6749's form encoding, so it is written here rather than
taken from an OAuth library. The token is kept in Redis for a little less than its
`expires_in`, and each process keeps a copy in memory, so N workers fetch one token, not N,
and a call costs no Redis round trip for it. Once three quarters of its life are gone, the
first process to take a short `SET NX` lock fetches the next one while the others go on with
the old, still valid, token. A 401 fetches a fresh token once and sends the request once
more; a second 401 is the caller's answer.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass

import httpx
import redis

from .budget import Budget
from .errors import error_from_response

TOKEN_PATH = "/v1/oauth/token"
KEY_PREFIX = "tw:api:token:"
LOCK_SECONDS = 10
# Stop using a token this long before the API says it expires (at most a tenth of its life).
EXPIRY_MARGIN_SECONDS = 30
REFRESH_AFTER_SHARE = 0.75  # of the token's life in Redis
WAIT_POLL_SECONDS = 0.05

# KEYS: lock. ARGV: the holder's id. Delete the lock only if it is still ours.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Token:
    value: str
    refresh_at: float  # time.monotonic() after which a new token should be fetched
    expires_at: float  # time.monotonic() after which this one must not be used

    @classmethod
    def from_ttl(cls, value: str, life_ms: int, left_ms: int) -> Token:
        now = time.monotonic()
        refresh_left = left_ms - life_ms * (1 - REFRESH_AFTER_SHARE)
        return cls(value, now + refresh_left / 1000, now + left_ms / 1000)

    def usable(self, rejected: str | None = None) -> bool:
        return self.value != rejected and time.monotonic() < self.expires_at

    def fresh(self, rejected: str | None = None) -> bool:
        return self.usable(rejected) and time.monotonic() < self.refresh_at


TokenFlow = Generator[httpx.Request, httpx.Response, Token]


class TokenAuth(httpx.Auth):
    """An `httpx.Auth` that adds `Authorization: Bearer ...`, shared through Redis."""

    def __init__(
        self,
        connection: redis.Redis,
        client_id: str,
        client_secret: str,
        scopes: tuple[str, ...],
        base_url: str,
        budget: Budget | None = None,
    ) -> None:
        self.redis = connection
        self.budget = budget  # the token request counts against the rate limit too
        self.token_url = base_url.rstrip("/") + TOKEN_PATH
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes
        # One token per API, client and scope set: two projects on one Redis do not mix.
        identity = "\n".join([base_url, client_id, " ".join(sorted(scopes))])
        self.key = KEY_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:24]
        self.lock_key = self.key + ":lock"
        self._release = self.redis.register_script(RELEASE)
        self._local: Token | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        timeout = request.extensions.get("timeout")  # the call's: a token fetch keeps to it
        token = yield from self._token(timeout=timeout)
        request.headers["Authorization"] = f"Bearer {token.value}"
        response = yield request
        if response.status_code == 401:
            # Revoked or expired early: one new token, one more try, never a loop.
            token = yield from self._token(rejected=token.value, timeout=timeout)
            request.headers["Authorization"] = f"Bearer {token.value}"
            yield request

    def _token(self, rejected: str | None = None, timeout: dict | None = None) -> TokenFlow:
        local = self._local
        if local is not None and local.fresh(rejected):
            return local
        shared = self._read()
        if shared is not None and shared.fresh(rejected):
            self._local = shared
            return shared
        holder = uuid.uuid4().hex
        if self.redis.set(self.lock_key, holder, nx=True, ex=LOCK_SECONDS):
            try:
                shared = self._read()  # fetched by another process just before our lock?
                if shared is None or not shared.fresh(rejected):
                    shared = yield from self._fetch(timeout)
            finally:
                self._release(keys=[self.lock_key], args=[holder])
        elif shared is None or not shared.usable(rejected):
            # Another process is fetching and there is nothing valid meanwhile: wait for it.
            shared = self._wait_for_other(rejected)
            if shared is None:  # it died while fetching
                shared = yield from self._fetch(timeout)
        self._local = shared
        return shared

    def _fetch(self, timeout: dict | None) -> TokenFlow:
        ticket = self.budget.take(time.monotonic() + LOCK_SECONDS) if self.budget else None
        response = None
        try:
            response = yield self._token_request(timeout)
        finally:
            if ticket is not None:
                self.budget.settle(ticket, response)
        return self._store(response)

    def _token_request(self, timeout: dict | None) -> httpx.Request:
        body = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "grant_type": "client_credentials",
        }
        if self.scopes:
            body["scope"] = " ".join(self.scopes)
        extensions = {"timeout": timeout} if timeout else {}
        return httpx.Request("POST", self.token_url, json=body, extensions=extensions)

    def _store(self, response: httpx.Response) -> Token:
        if response.status_code != 200:
            response.read()
            raise error_from_response(response)
        response.read()
        payload = response.json()
        expires_in = float(payload.get("expires_in", 3600))
        life_ms = int(1000 * (expires_in - min(EXPIRY_MARGIN_SECONDS, expires_in / 10)))
        value = payload["access_token"]
        self.redis.set(self.key, json.dumps({"token": value, "life": life_ms}), px=life_ms)
        return Token.from_ttl(value, life_ms, life_ms)

    def _read(self) -> Token | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.key)
        pipe.pttl(self.key)
        raw, left_ms = pipe.execute()
        if raw is None or left_ms <= 0:
            return None
        stored = json.loads(raw)
        return Token.from_ttl(stored["token"], stored["life"], left_ms)

    def _wait_for_other(self, rejected: str | None) -> Token | None:
        deadline = time.monotonic() + LOCK_SECONDS
        while time.monotonic() < deadline:
            time.sleep(WAIT_POLL_SECONDS)
            fetching = self.redis.exists(self.lock_key)
            token = self._read()
            if token is not None and token.usable(rejected):
                return token
            if not fetching:
                return None
        return None
