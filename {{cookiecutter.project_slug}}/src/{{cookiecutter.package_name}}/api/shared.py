"""`api`: the process's one client, built from the environment the first time it is used.

Building it lazily means a worker starts, and runs handlers that never call the API,
without any API settings; a missing credential is a one-line `ConfigError` naming the
variable, raised by the first call that needs it. A forked child builds its own client
rather than share its parent's connections.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..config import ConfigError, Settings, settings_from_env
from ..connection import connect
from .client import Client


def client_from_settings(settings: Settings) -> Client:
    """A `Client` for the configured API, sharing tokens and budget through the project's
    Redis; raises `ConfigError` when a credential is missing."""
    client_id, client_secret = settings.require_api_credentials()
    return Client(
        settings.api_base_url,
        client_id,
        client_secret,
        connect(settings),
        scopes=settings.api_scopes,
        timeout=settings.api_timeout_seconds,
        call_seconds=settings.job_timeout_seconds,
    )


class SharedClient:
    """Stands for the process's `Client`: every attribute is the real client's."""

    def __init__(self) -> None:
        self._client: Client | None = None
        self._pid = 0
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """True when the API credentials are set (nothing is built or checked further)."""
        try:
            settings_from_env().require_api_credentials()
        except ConfigError:
            return False
        return True

    def client(self) -> Client:
        """The process's client, built on first use."""
        client = self._client
        if client is not None and self._pid == os.getpid():
            return client
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = client_from_settings(settings_from_env())
                self._pid = os.getpid()
            return self._client

    def reset(self) -> None:
        """Forget the client (settings changed, or a test wants a fresh one)."""
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client(), name)


api = SharedClient()
