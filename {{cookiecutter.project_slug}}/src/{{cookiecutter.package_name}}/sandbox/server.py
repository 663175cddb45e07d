"""Serve the sandbox: in the foreground for the `sandbox` command, or in a background
thread of the current process for tests (`running`).

Werkzeug's threaded server: one thread per request, each connection closed after its
answer (werkzeug does not keep connections alive). A dev and test tool, one process, its
state in memory; nothing here is meant to face the internet.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from werkzeug.serving import WSGIRequestHandler, make_server

from ..config import ConfigError
from ..console.security import is_loopback
from .app import State, build_state, create_app
from .options import DEFAULT_CLIENT_SECRET, Options
from .sender import WebhookSender
from .store import Store

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass(frozen=True)
class Sandbox:
    """A running sandbox, as `running()` yields it."""

    url: str  # e.g. http://127.0.0.1:43121, without a trailing slash
    state: State

    @property
    def options(self) -> Options:
        return self.state.options

    @property
    def client_id(self) -> str:
        return self.state.options.client_id

    @property
    def client_secret(self) -> str:
        return self.state.options.client_secret

    @property
    def store(self) -> Store:
        """The catalogue and orders, to read or change without HTTP."""
        return self.state.store

    @property
    def webhooks(self) -> WebhookSender | None:
        """The webhook sender (`.results`, `.counts()`, `.wait_until_idle()`), if any."""
        return self.state.sender

    def stats(self) -> dict:
        """What `GET /_sandbox/stats` answers, read directly."""
        return self.state.stats_json()


@contextlib.contextmanager
def running(
    options: Options | None = None, *, host: str = "127.0.0.1", port: int = 0, **fields
) -> Iterator[Sandbox]:
    """Run a sandbox in a background thread until the block ends.

    Give an `Options`, or its fields as keywords (`rate_limit=5, fail_rate=0.2,
    token_ttl=2, webhook_url=..., webhook_secret=...`). Port 0 picks a free port; the
    yielded `Sandbox` has the `.url`, the credentials, `.stats()` and the `.store`.
    """
    if options is None:
        options = Options(**fields)
    elif fields:
        raise TypeError("give an Options or its fields, not both")
    state = build_state(options)
    try:
        with serving(create_app(state=state), host, port) as url:
            yield Sandbox(url, state)
    finally:
        if state.sender is not None:
            state.sender.close()


@contextlib.contextmanager
def serving(app: WSGIApplication, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve any WSGI app (the sandbox, or the receiver in tests) from a background thread
    until the block ends; yields its base URL. Port 0 picks a free port."""
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wsgi", daemon=True
    )
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def check_binding(host: str, options: Options, public: bool = False) -> None:
    """Refuse to serve beyond this machine unless told to (`public`), and then never with
    the default credentials, which the docs publish: anyone reaching the port could take
    tokens, and the `/_sandbox/` controls (prices, stats) have no authentication at all."""
    if is_loopback(host):
        return
    if not public:
        raise ConfigError(
            f"the sandbox may listen on {host} only with --public: its /_sandbox/ controls "
            "need no token (or bind it to 127.0.0.1)"
        )
    if options.client_secret == DEFAULT_CLIENT_SECRET:
        raise ConfigError(
            f"TW_API_CLIENT_SECRET is not set: the sandbox's default secret is published, "
            f"so it may listen on {host} only with a secret of your own"
        )


def serve(
    options: Options,
    host: str,
    port: int,
    announce: Callable[[str], None] = print,
    public: bool = False,
) -> None:
    """Serve in the foreground until Ctrl-C (the `sandbox` command); `ConfigError` for a
    host beyond this machine (`check_binding`)."""
    check_binding(host, options, public)
    state = build_state(options)
    server = make_server(host, port, create_app(state=state), threaded=True)
    sends = (
        f"sends signed webhooks to {options.webhook_url}"
        if options.webhook_url
        else "sends no webhooks (no --webhook-url)"
    )
    announce(
        f"Tickets Wholesale API sandbox on http://{host}:{server.server_port} "
        f"(client id {options.client_id!r}, {options.rate_limit} requests/s); {sends}"
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if state.sender is not None:
            state.sender.close()
