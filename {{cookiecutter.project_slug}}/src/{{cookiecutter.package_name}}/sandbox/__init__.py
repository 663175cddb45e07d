"""An offline stand-in for the Tickets Wholesale API, for dev and tests.

It serves the documented surface from memory (token, health, inventory search, orders)
with the API's conventions (error shape, `X-RateLimit-*`, 429, `Idempotency-Key`), can
inject faults, and sends signed webhooks for the changes it makes. An application beside
the receiver, started by the `sandbox` command, by `dev --sandbox` (`dev/server.py`) and
by the test plugin (`testing.py`)::

    from {{ cookiecutter.package_name }} import sandbox

    with sandbox.running(rate_limit=5) as api:
        ...  # api.url, api.client_id, api.client_secret, api.stats(), api.store

The receiver's web and worker modules never import it. See docs/sandbox.md.
"""

from .options import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SCOPES, Options
from .server import Sandbox, running, serve

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "SCOPES",
    "Options",
    "Sandbox",
    "running",
    "serve",
]
