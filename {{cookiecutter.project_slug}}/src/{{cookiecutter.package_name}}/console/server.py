"""Serve the console: `console [--host H] [--port N] [--read-only]`.

Werkzeug's threaded server is enough for the few people who look at the console; it runs
in its own process, so a busy page never slows the receiver.
"""

from __future__ import annotations

import logging

from werkzeug.serving import make_server

from ..config import Settings
from ..connection import connect
from .app import create_app
from .security import check_binding

log = logging.getLogger(__name__)


def run(settings: Settings, host: str, port: int, read_only: bool = False) -> int:
    """Serve until interrupted. Raises `ConfigError` for a non-loopback host without a token."""
    check_binding(host, settings.console_token)
    app = create_app(settings, connect(settings), settings.console_token, read_only, host)
    server = make_server(host, port, app, threaded=True)
    shown = f"[{host}]" if ":" in host else host
    mode = " (read-only)" if read_only else ""
    login = ", token required" if settings.console_token else ""
    print(f"console on http://{shown}:{server.server_port}/{mode}{login}", flush=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per page view
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
