"""Who may use the console, and how its forms are protected. Pure functions, no Flask.

Without `TW_CONSOLE_TOKEN` the console is open to whoever reaches it, which is why it then
binds to a loopback address only (`check_binding`). With a token every request needs it:
as `Authorization: Bearer <token>` (scripts), or through the session cookie that the login
form sets once the token was typed in. Tokens and cookies are compared in constant time.

A session is a cookie `<nonce>.<flag>.<expiry>.<mac>`, signed with a key derived from the
token (so a login outlives a restart of the console, and changing the token ends every
session) or, without a token, with a random key per process. Every form carries the
session's CSRF token, HMAC(key, nonce): a page of another site can make the browser post,
but cannot read that token (the cookie is SameSite=Strict as well).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from dataclasses import dataclass

from ..config import ConfigError

COOKIE = "tw_console"
SESSION_SECONDS = 12 * 3600


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the console on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def check_binding(host: str, token: str) -> None:
    """Refuse to serve the console beyond this machine without a token."""
    if not token and not is_loopback(host):
        raise ConfigError(
            f"TW_CONSOLE_TOKEN is not set: the console may listen on {host} only with a "
            "token (or bind it to 127.0.0.1)"
        )


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class Session:
    nonce: str
    authenticated: bool
    expires: int


class Guard:
    """Checks tokens, issues and reads session cookies, makes and checks CSRF tokens."""

    def __init__(self, token: str = ""):
        self.token = token
        self._key = (
            hmac.new(token.encode(), b"tw-console-session", hashlib.sha256).digest()
            if token
            else os.urandom(32)
        )

    @property
    def required(self) -> bool:
        return bool(self.token)

    def token_matches(self, given: str | None) -> bool:
        return bool(self.token) and hmac.compare_digest((given or "").encode(), self.token.encode())

    def _mac(self, message: str) -> str:
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def new_session(self, authenticated: bool, now: float | None = None) -> tuple[Session, str]:
        """A fresh session and its cookie value."""
        expires = int(time.time() if now is None else now) + SESSION_SECONDS
        session = Session(secrets.token_urlsafe(16), authenticated, expires)
        payload = f"{session.nonce}.{int(authenticated)}.{expires}"
        return session, f"{payload}.{self._mac(payload)}"

    def read_session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged or expired."""
        payload, _, mac = (cookie or "").rpartition(".")
        if not payload or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        nonce, flag, expires = payload.split(".")
        if int(expires) < (time.time() if now is None else now):
            return None
        return Session(nonce, flag == "1", int(expires))

    def csrf_token(self, session: Session) -> str:
        return self._mac("csrf:" + session.nonce)

    def csrf_matches(self, session: Session | None, given: str | None) -> bool:
        if session is None:
            return False
        return hmac.compare_digest((given or "").encode(), self.csrf_token(session).encode())
