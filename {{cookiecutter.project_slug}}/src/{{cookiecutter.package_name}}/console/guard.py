"""Who comes in, on every request: `security`'s rules applied with Flask's session.

`admit` runs before every view. It refuses a `Host` that is not one of the console's names
(421) and a POST sent by another site's page (403); checks a bearer token (401 when
wrong); gives a browser without a session a fresh one; sends a visitor not logged in to
the login page (401 for a POST); checks the CSRF token of every POST not sent with the
bearer token (403); and refuses the changing endpoints when the console is read-only.
`protect` adds the headers that keep pages from being framed, sniffed or leaking their
address. The session is Flask's signed cookie, marked Secure on HTTPS (`ConsoleSessions`).
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, abort, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from .security import bearer, host_name, new_csrf_token, same_origin, same_secret
from .state import Console, current_console

# Endpoints that change something: refused when the console is read-only.
ACTIONS = {"pages.retry", "pages.retry_matching"}
# Endpoints served to a visitor not logged in.
OPEN_ENDPOINTS = {"auth.login"}


class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, whose cookie is Secure when the page came over
    HTTPS. Behind a TLS proxy the console sees plain HTTP; trusting the proxy's word here
    can only make the cookie stricter."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or request.headers.get("X-Forwarded-Proto") == "https"


def start_session(authenticated: bool) -> None:
    """A fresh session (a new CSRF token), logged in or not: a login never keeps the
    session it started from."""
    session.clear()
    session.permanent = True  # the cookie lasts SESSION_SECONDS, not the browser's session
    session["csrf"] = new_csrf_token()
    session["authenticated"] = authenticated


def refuse_other_sites(console: Console) -> None:
    """Abort unless the browser took this console for itself: asked by one of its own
    names (DNS rebinding asks by another), and a POST sent by one of its own pages."""
    hosts = console.hosts
    if hosts is not None and host_name(request.host) not in hosts:
        abort(
            421,
            f"This console answers only to {', '.join(sorted(hosts))} (any port), not "
            f"to {request.host!r}: open it by one of those names. A page of another site "
            "that points its own name at this machine is refused this way.",
        )
    origin = request.headers.get("Origin")
    referer = request.headers.get("Referer")
    if request.method == "POST" and not same_origin(origin, referer, request.host):
        abort(
            403,
            f"This form was sent by a page of {origin if origin is not None else referer!r}, "
            f"not by this console ({request.host}): changes are taken only from the "
            "console's own pages.",
        )


def admit() -> Response | None:
    console = current_console()
    g.csp_nonce = secrets.token_urlsafe(16)
    refuse_other_sites(console)
    by_header = bearer(request.headers.get("Authorization")) if console.token_required else None
    if by_header is not None and not same_secret(console.token, by_header):
        abort(401, "The bearer token is not the console's token.")
    if "csrf" not in session:  # none yet, forged, or expired
        start_session(authenticated=False)
    g.csrf_token = session["csrf"]
    admitted = not console.token_required or by_header is not None or session["authenticated"]
    if not admitted and request.endpoint not in OPEN_ENDPOINTS:
        if request.method != "GET":
            abort(401, "Log in first.")
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if request.method == "POST":
        # A bearer token is never sent by a browser on its own: no CSRF to fear.
        given = request.form.get("csrf")
        if by_header is None and not given:
            abort(
                403,
                "Refused: this POST carries no CSRF token (the hidden `csrf` field of the "
                "console's forms), so nothing shows it came from a page of this console. "
                "Use the console's own buttons (with TW_CONSOLE_TOKEN set, a script may "
                "send `Authorization: Bearer <token>` instead).",
            )
        if by_header is None and not same_secret(session["csrf"], given):
            abort(
                403,
                "Refused: the form's CSRF token is not this session's (the page is older "
                "than your session, or came from elsewhere). Reload the page and try again.",
            )
        if console.read_only and request.endpoint in ACTIONS:
            abort(403, "This console is read-only.")
    return None


def protect(response: Response) -> Response:
    nonce = g.get("csp_nonce", "")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    # No address of the console ever leaves for another site; its own forms keep their
    # origin, which `same_origin` checks (under no-referrer a browser posts `Origin: null`).
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response
