"""What a sandbox is started with: its clients, its limits, its faults and where it sends.

One frozen object, built by the `sandbox` command from its flags and the environment, or
by tests through `sandbox.running(**options)`; every other module reads from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Used when TW_API_CLIENT_ID / TW_API_CLIENT_SECRET are unset: the sandbox guards nothing.
DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-secret"
SCOPES = ("inventory.read", "orders.read", "orders.write")


@dataclass(frozen=True)
class Options:
    """Everything a sandbox is configured with (the CLI flags, named the same)."""

    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    # More clients, id -> secret, e.g. to see that limits and keys are kept per client.
    extra_clients: Mapping[str, str] = field(default_factory=dict)
    token_ttl: int = 3600  # seconds an access token is valid (`expires_in`)
    rate_limit: int = 100  # requests per client per one-second window; past it, 429
    fail_rate: float = 0.0  # share of requests answered 500/503 before doing anything
    fail_token: bool = False  # let faults hit the token endpoint too
    latency_ms: int = 0  # added to every API request, while it holds its idempotency key
    latency_jitter_ms: int = 0  # plus a uniform 0..jitter on top
    seed: int | None = None  # for the fault and jitter draws, to repeat a run
    idempotency_ttl: int = 24 * 3600  # seconds an idempotency record is kept
    webhook_url: str | None = None  # where events are POSTed; None sends nothing
    webhook_secret: str | None = None  # signs them (the first of TW_WEBHOOK_SECRETS)
    webhook_max_attempts: int = 6  # per event, as the API's sender
    webhook_backoff: float = 0.5  # first retry delay in seconds, doubling each time
    # Webhooks that never arrive, as after a long outage of the receiver (see reconcile):
    webhook_retry_window: float = 0.0  # seconds from an event's first attempt until the
    # sender gives up on it (0: only webhook_max_attempts decides)
    webhook_loss: float = 0.0  # share of events never sent at all (drawn from `seed`)
    sample_orders: bool = False  # hold the orders of samples/events (the `sandbox` command)

    def __post_init__(self) -> None:
        if self.rate_limit < 1:
            raise ValueError(f"rate_limit must be at least 1, got {self.rate_limit}")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be between 0 and 1, got {self.fail_rate}")
        if self.token_ttl < 1 or self.idempotency_ttl < 1:
            raise ValueError("token_ttl and idempotency_ttl must be at least 1 second")
        if self.latency_ms < 0 or self.latency_jitter_ms < 0:
            raise ValueError("latency_ms and latency_jitter_ms must not be negative")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError(
                f"the webhook URL must start with http:// or https://, got {self.webhook_url!r}"
            )
        if not 0.0 <= self.webhook_loss <= 1.0 or self.webhook_retry_window < 0:
            raise ValueError("webhook_loss must be between 0 and 1, webhook_retry_window >= 0")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("a webhook_url needs a webhook_secret to sign with")

    @property
    def clients(self) -> dict[str, str]:
        """Every client the token endpoint accepts: id -> secret."""
        return {self.client_id: self.client_secret, **self.extra_clients}
