"""Who may use the console, and how its forms are protected. Pure functions, no Flask
(`guard` applies them to each request).

Without `TW_CONSOLE_TOKEN` the console is open to whoever reaches it, which is why it then
binds to a loopback address only (`check_binding`). With a token every request needs it:
as `Authorization: Bearer <token>` (scripts), or through the session cookie that the login
form sets once the token was typed in. Tokens and CSRF tokens are compared in constant time.

The session is Flask's own (a cookie signed by itsdangerous), signed with a key derived
from the token (`session_key`: a login outlives a restart of the console, and changing the
token ends every session) or, without a token, with a random key per process. Every form
carries the session's CSRF token, a random value kept in the session: a page of another
site can make the browser post, but cannot read that token (the cookie is SameSite=Strict
as well).

A page of another site can also point its own name at 127.0.0.1 once the browser has
loaded it (DNS rebinding): the browser then takes the console for that site, and lets the
page read its forms and CSRF token. The console without a token therefore answers only to
the names it is reached by on this machine (`allowed_hosts`), never to another site's
name; and every POST from a browser must name this console as its origin (`same_origin`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from urllib.parse import urlsplit

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


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


def allowed_hosts(host: str, token: str) -> frozenset[str] | None:
    """The names (of a `Host` header, port aside) the console bound to `host` answers to;
    None for any name.

    Without a token (so on a loopback address, `check_binding`): the loopback names and
    `host` itself, which is all a browser on this machine or at the end of an SSH tunnel
    sends, so a name another site rebound to 127.0.0.1 is refused. With a token, which a
    rebound page never has, any name: the console is then reached by names it cannot know
    (the machine's, a proxy's).
    """
    if token:
        return None
    name = host.lower()
    return LOOPBACK_NAMES | {f"[{name}]" if ":" in name and "[" not in name else name}


def host_name(host_header: str) -> str:
    """The name of a `Host` header without its port, lowercase: `[::1]:8050` -> `[::1]`."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rpartition(":")[0] if ":" in value else value


def same_origin(origin: str | None, referer: str | None, host_header: str) -> bool:
    """Whether a POST came from a page of this console, as the browser tells it.

    A browser names the page that sent a form in `Origin` (every current browser does for
    a POST), or else sometimes in `Referer`; either must be this very host and port. A
    request with neither came from no page (a script, curl); the CSRF token or the bearer
    token still guards it. `Origin: null` (a sandboxed frame, a redirect across sites) is
    never this console.
    """
    sender = origin if origin is not None else referer
    if not sender and origin is None:
        return True
    parts = urlsplit((sender or "").strip())
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def session_key(token: str) -> bytes:
    """The key sessions are signed with: derived from the token, or random per process
    without one (sessions then end with the process, which nobody logs in to anyway)."""
    if not token:
        return os.urandom(32)
    return hmac.new(token.encode(), b"tw-console-session", hashlib.sha256).digest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def same_secret(expected: str, given: str | None) -> bool:
    """Whether `given` is `expected` (a token, a CSRF token), compared in constant time;
    never true for an empty `expected`."""
    return bool(expected) and hmac.compare_digest((given or "").encode(), expected.encode())
