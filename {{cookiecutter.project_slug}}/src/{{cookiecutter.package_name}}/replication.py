"""Acknowledged means replicated: waiting for Redis replicas before a write counts.

Redis replicates asynchronously. A primary that dies right after a write takes the write
with it when Sentinel promotes a replica that had not received it yet: an event the
receiver acknowledged is gone, and so is a worker's note that a handler finished (the
handler then runs again). With `TW_REDIS_ACK_REPLICAS=N` every write that promises
something is followed by `WAIT N timeout`, which returns once N replicas hold everything
this connection has written, or when the timeout (`TW_REDIS_ACK_TIMEOUT_MS`) is up.

WAIT counts for the connection it is sent on, so it must follow the write on the same one
(redis-py may hand a separate command another pooled connection, where WAIT would wait
for nothing), and it does not block inside a script or MULTI. Hence:

- the intake sends its script and WAIT together on its own connection (`ScriptRunner.
  run_and_wait`), in one round trip, and `require` turns too few replicas into
  `NotReplicated`: the receiver answers 503 `not_replicated`, the sender retries;
- a worker writes and WAITs in one non-transactional pipeline (`persist`), again and again
  until the replicas confirm: a handler's success mark, then a small write of its own
  after RQ's writes (`barrier`), which confirms everything this process wrote before it,
  since replicas apply the primary's writes in order.

WAIT is not strong consistency (see `docs/reliability.md` for the windows it leaves).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from .config import Settings

log = logging.getLogger(__name__)

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
# Written by `barrier` only to carry a replication offset; it expires by itself.
BARRIER_KEY = "tw:replication:barrier"
BARRIER_TTL_MS = 60_000
# A worker waiting for its replicas says so at most this often.
WARN_EVERY_SECONDS = 10


class NotReplicated(Exception):
    """Fewer replicas than required confirmed a write in time; the write may still be on
    the primary alone."""

    def __init__(self, confirmed: int, wanted: int, timeout_ms: int | None):
        super().__init__(
            f"{confirmed} of {wanted} replica(s) confirmed the write within {timeout_ms} ms"
            if timeout_ms is not None
            else "Redis refused the write: too few replicas in sync (min-replicas-to-write)"
        )
        self.confirmed, self.wanted = confirmed, wanted


@dataclass(frozen=True)
class Policy:
    """How many replicas must confirm, and how long one WAIT may take."""

    replicas: int = 0
    timeout_ms: int = 500

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(settings.redis_ack_replicas, settings.redis_ack_timeout_ms)

    @property
    def command(self) -> tuple[str, int, int]:
        return ("WAIT", self.replicas, self.timeout_ms)


# The worker process's policy, set by `configure` when the worker is built: the job
# function (`jobs.py`) runs inside RQ and is handed no settings.
POLICY = Policy()


def configure(settings: Settings) -> None:
    global POLICY
    POLICY = Policy.from_settings(settings)


def require(confirmed: int, policy: Policy, started: float) -> None:
    """Count one intake WAIT that `started` (perf_counter) with its write; raise
    `NotReplicated` when fewer than `policy.replicas` confirmed."""
    _observe("intake", started, confirmed >= policy.replicas)
    if confirmed < policy.replicas:
        raise NotReplicated(confirmed, policy.replicas, policy.timeout_ms)


def persist(client: redis.Redis, write: Callable[[redis.client.Pipeline], object]) -> bool:
    """Run `write(pipeline)`, then WAIT on the same connection, until the replicas of
    `POLICY` confirm. The write is sent again each time: after a failover it lands on the
    new primary, whose replicas then confirm it. Nothing else is done meanwhile, so no
    handler or job starts on a record that a failover could undo. Without replicas
    required, just the write.

    Returns False when Redis failed on the way: writes made before this one, on any
    connection, may then have been lost with the old primary."""
    policy = POLICY
    if not policy.replicas:
        with client.pipeline(transaction=False) as pipe:
            write(pipe)
            pipe.execute()
        return True
    warned, unbroken = 0.0, True
    while True:
        started = time.perf_counter()
        try:
            with client.pipeline(transaction=False) as pipe:
                write(pipe)
                pipe.execute_command(*policy.command)
                confirmed = pipe.execute()[-1]
        except REDIS_DOWN as exc:
            confirmed, problem, unbroken = 0, f"Redis failed ({exc})", False
            time.sleep(policy.timeout_ms / 1000)
        else:
            problem = f"{confirmed} of {policy.replicas} replica(s) confirmed"
        _observe("worker", started, confirmed >= policy.replicas)
        if confirmed >= policy.replicas:
            return unbroken
        if time.monotonic() - warned > WARN_EVERY_SECONDS:
            warned = time.monotonic()
            log.warning("waiting for Redis replicas before going on: %s; trying again", problem)


def barrier(client: redis.Redis) -> bool:
    """Wait until the replicas hold everything this process wrote so far, on whatever
    connection: a write of its own, confirmed by `persist`, follows all earlier ones in
    the replication stream. False when Redis failed meanwhile (see `persist`): the
    earlier writes may be gone, and the caller must look."""
    if not POLICY.replicas:
        return True
    return persist(client, lambda pipe: pipe.set(BARRIER_KEY, b"1", px=BARRIER_TTL_MS))


def _observe(by: str, started: float, confirmed: bool) -> None:
    # Imported here: `metrics` imports the intake, which imports this module.
    from . import metrics

    metrics.REPLICA_WAIT.labels(by).observe(time.perf_counter() - started)
    if not confirmed:
        metrics.NOT_REPLICATED.labels(by).inc()
