"""One console's parts: built once by `create_app`, read by its hooks and views."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from ..config import Settings


@dataclass(frozen=True)
class Console:
    settings: Settings
    connection: redis.Redis
    token: str = ""  # TW_CONSOLE_TOKEN; empty: no login
    read_only: bool = False  # hides the forms, refuses their POSTs with 403
    hosts: frozenset[str] | None = None  # the Host names answered (`security.allowed_hosts`)

    @property
    def token_required(self) -> bool:
        return bool(self.token)


def current_console() -> Console:
    """The console serving this request (`app.extensions["tw_console"]`)."""
    return current_app.extensions["tw_console"]
