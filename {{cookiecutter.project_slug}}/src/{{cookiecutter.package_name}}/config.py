"""Settings, read once from the environment.

Every knob of the receiver and the worker lives here, so the rest of the package takes a
`Settings` object and never touches `os.environ`. For local runs a `.env` file in the
working directory is read first; variables already set in the environment win over it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# Chosen when the project was generated; TW_WEBHOOK_PATH overrides it.
DEFAULT_WEBHOOK_PATH = "{{ cookiecutter.webhook_path }}"
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")
# The package whose every module is imported for `@on` handlers; TW_HANDLERS_PACKAGE
# names another, or none when set empty.
DEFAULT_HANDLERS_PACKAGE = f"{__package__}.handlers"
# The API's sandbox environment, for testing and certification (the API's docs).
DEFAULT_API_BASE_URL = "https://api.sandbox.wholesaletickets.ca"
# TW_REDIS_ACK_REPLICAS: more replicas than this is a typo, not a topology.
MAX_ACK_REPLICAS = 16
# TW_REDIS_ACK_TIMEOUT_MS must end well within the connection's 5 s socket timeout
# (`connection.py`), or a slow WAIT would read as a lost Redis. 0 would make WAIT block.
MAX_ACK_TIMEOUT_MS = 4000


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable to fix."""


@dataclass(frozen=True)
class Settings:
    secrets: tuple[str, ...] = ()
    redis_url: str = "redis://localhost:6379/0"
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "mymaster"
    webhook_path: str = DEFAULT_WEBHOOK_PATH
    tolerance_seconds: int = 300
    max_body_bytes: int = 256 * 1024
    dedupe_window_seconds: int = 3 * 24 * 3600
    # The modules whose handlers the worker loads: the handlers package, then the modules
    # of TW_HANDLER_MODULES. A package's modules are all loaded.
    handler_modules: tuple[str, ...] = (DEFAULT_HANDLERS_PACKAGE,)
    job_timeout_seconds: int = 60
    worker_lost_after_seconds: int = 20
    retry_max: int = 5
    retry_base_seconds: int = 10
    retry_max_seconds: int = 3600
    capture_max_events: int = 0
    # Waiting jobs a queue may hold before the receiver answers 429 (0: no limit).
    max_queue_depth: int = 100_000
    log_format: str = "text"
    log_level: str = "INFO"
    worker_metrics_port: int = 0
    # The receiver's metrics, served by gunicorn's master on a port of their own (0: off).
    metrics_port: int = 9180
    metrics_addr: str = "0.0.0.0"
    api_base_url: str = DEFAULT_API_BASE_URL
    api_client_id: str = ""
    api_client_secret: str = field(default="", repr=False)
    console_token: str = field(default="", repr=False)
    api_scopes: tuple[str, ...] = ()
    api_timeout_seconds: int = 10
    # Reconciliation with the API, for webhooks that never arrived (docs/reconcile.md).
    reconcile_interval_seconds: int = 0  # the workers' periodic pass; 0: off
    reconcile_overlap_seconds: int = 300  # each pass starts this far before its watermark
    reconcile_settle_seconds: int = 30  # orders changed more recently wait for the next pass
    reconcile_updated_since: bool = True  # the orders list takes `updatedSince`
    ledger_retention_seconds: int = 30 * 24 * 3600  # an order's entry, after its last event
    # Lanes (`lanes.py`): what a lane does when its first event fails every retry.
    lane_on_failure: str = "block"
    # Replicas that must confirm a write before it counts (`replication.py`); 0: no wait.
    redis_ack_replicas: int = 0
    redis_ack_timeout_ms: int = 500

    def require_secrets(self) -> tuple[str, ...]:
        """The signing secrets; raises when none is configured (the worker needs none)."""
        if not self.secrets:
            raise ConfigError(
                "TW_WEBHOOK_SECRETS is not set: set it to your webhook signing secret "
                "(several, comma-separated, while you rotate secrets)"
            )
        return self.secrets

    def require_api_credentials(self) -> tuple[str, str]:
        """The API client's id and secret; raises naming the first one missing."""
        for name, value in (
            ("TW_API_CLIENT_ID", self.api_client_id),
            ("TW_API_CLIENT_SECRET", self.api_client_secret),
        ):
            if not value:
                raise ConfigError(
                    f"{name} is not set: set TW_API_CLIENT_ID and TW_API_CLIENT_SECRET to your "
                    "API credentials (or run `dev --sandbox`) to call the Tickets Wholesale API"
                )
        return self.api_client_id, self.api_client_secret

    @property
    def retry_intervals(self) -> list[int]:
        """Exponential backoff between handler retries: base, 2*base, 4*base..., capped."""
        return [
            min(self.retry_base_seconds * 2**attempt, self.retry_max_seconds)
            for attempt in range(self.retry_max)
        ]


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def _redis_url(env: Mapping[str, str]) -> str:
    url = env.get("REDIS_URL", "").strip() or Settings.redis_url
    if not url.startswith(REDIS_URL_SCHEMES):
        # Not echoed: a URL may hold a password.
        raise ConfigError(
            f"REDIS_URL must start with {', '.join(REDIS_URL_SCHEMES)} "
            "(e.g. redis://localhost:6379/0)"
        )
    return url


def _sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in _split(raw):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"TW_REDIS_SENTINELS entries must look like host:port, got {item!r}")
        hosts.append((host, int(port)))
    return tuple(hosts)


def _handler_modules(env: Mapping[str, str]) -> tuple[str, ...]:
    package = env.get("TW_HANDLERS_PACKAGE", DEFAULT_HANDLERS_PACKAGE).strip()
    extra = _split(env.get("TW_HANDLER_MODULES", ""))
    return tuple(dict.fromkeys([package, *extra] if package else extra))


def _api_base_url(env: Mapping[str, str]) -> str:
    url = env.get("TW_API_BASE_URL", "").strip().rstrip("/") or DEFAULT_API_BASE_URL
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"TW_API_BASE_URL must start with https:// or http://, got {url!r}")
    return url


def _lane_on_failure(env: Mapping[str, str]) -> str:
    value = env.get("TW_LANE_ON_FAILURE", "").strip().lower() or "block"
    if value not in ("block", "skip"):
        raise ConfigError(f"TW_LANE_ON_FAILURE must be 'block' or 'skip', got {value!r}")
    return value


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build `Settings` from `env` (default: `.env` merged under `os.environ`)."""
    if env is None:
        env = load_environment()
    path = env.get("TW_WEBHOOK_PATH", "").strip() or DEFAULT_WEBHOOK_PATH
    if not path.startswith("/"):
        raise ConfigError(f"TW_WEBHOOK_PATH must start with '/', got {path!r}")
    log_format = env.get("TW_LOG_FORMAT", "text").strip().lower() or "text"
    if log_format not in ("text", "json"):
        raise ConfigError(f"TW_LOG_FORMAT must be 'text' or 'json', got {log_format!r}")
    log_level = env.get("TW_LOG_LEVEL", "").strip().upper() or "INFO"
    if log_level not in logging.getLevelNamesMapping():
        raise ConfigError(
            f"TW_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {log_level!r}"
        )
    return Settings(
        secrets=_split(env.get("TW_WEBHOOK_SECRETS", "")),
        redis_url=_redis_url(env),
        redis_sentinels=_sentinels(env.get("TW_REDIS_SENTINELS", "")),
        redis_sentinel_master=env.get("TW_REDIS_SENTINEL_MASTER", "").strip()
        or Settings.redis_sentinel_master,
        webhook_path=path,
        tolerance_seconds=_int(env, "TW_SIGNATURE_TOLERANCE_SECONDS", 300, minimum=1),
        max_body_bytes=_int(env, "TW_MAX_BODY_BYTES", Settings.max_body_bytes, minimum=1024),
        dedupe_window_seconds=_int(
            env, "TW_DEDUPE_WINDOW_SECONDS", Settings.dedupe_window_seconds, minimum=1
        ),
        handler_modules=_handler_modules(env),
        job_timeout_seconds=_int(env, "TW_JOB_TIMEOUT_SECONDS", 60, minimum=1),
        worker_lost_after_seconds=_int(env, "TW_WORKER_LOST_AFTER_SECONDS", 20, minimum=2),
        retry_max=_int(env, "TW_RETRY_MAX", 5),
        retry_base_seconds=_int(env, "TW_RETRY_BASE_SECONDS", 10),
        retry_max_seconds=_int(env, "TW_RETRY_MAX_SECONDS", 3600),
        capture_max_events=_int(env, "TW_CAPTURE_MAX_EVENTS", 0),
        max_queue_depth=_int(env, "TW_MAX_QUEUE_DEPTH", Settings.max_queue_depth),
        log_format=log_format,
        log_level=log_level,
        worker_metrics_port=_int(env, "TW_WORKER_METRICS_PORT", 0, maximum=65535),
        metrics_port=_int(env, "TW_METRICS_PORT", Settings.metrics_port, maximum=65535),
        metrics_addr=env.get("TW_METRICS_ADDR", "").strip() or Settings.metrics_addr,
        api_base_url=_api_base_url(env),
        api_client_id=env.get("TW_API_CLIENT_ID", "").strip(),
        api_client_secret=env.get("TW_API_CLIENT_SECRET", "").strip(),
        console_token=env.get("TW_CONSOLE_TOKEN", "").strip(),
        api_scopes=tuple(env.get("TW_API_SCOPES", "").replace(",", " ").split()),
        api_timeout_seconds=_int(env, "TW_API_TIMEOUT_SECONDS", 10, minimum=1),
        **_reconcile_settings(env),
        lane_on_failure=_lane_on_failure(env),
        redis_ack_replicas=_int(env, "TW_REDIS_ACK_REPLICAS", 0, maximum=MAX_ACK_REPLICAS),
        redis_ack_timeout_ms=_int(
            env, "TW_REDIS_ACK_TIMEOUT_MS", 500, minimum=1, maximum=MAX_ACK_TIMEOUT_MS
        ),
    )


def _reconcile_settings(env: Mapping[str, str]) -> dict:
    """The reconciler's settings and the order ledger's retention."""
    raw = env.get("TW_RECONCILE_UPDATED_SINCE", "").strip().lower() or "true"
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"TW_RECONCILE_UPDATED_SINCE must be true or false, got {raw!r}")
    return {
        "reconcile_interval_seconds": _int(env, "TW_RECONCILE_INTERVAL_SECONDS", 0),
        "reconcile_overlap_seconds": _int(env, "TW_RECONCILE_OVERLAP_SECONDS", 300),
        "reconcile_settle_seconds": _int(env, "TW_RECONCILE_SETTLE_SECONDS", 30),
        "reconcile_updated_since": raw in ("true", "1", "yes"),
        "ledger_retention_seconds": _int(
            env, "TW_LEDGER_RETENTION_SECONDS", Settings.ledger_retention_seconds, minimum=3600
        ),
    }


def load_environment(dotenv_path: str = ".env") -> dict[str, str]:
    """Return `os.environ` with the `.env` file's values filled in underneath it."""
    from dotenv import dotenv_values

    merged = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
    merged.update(os.environ)
    return merged
