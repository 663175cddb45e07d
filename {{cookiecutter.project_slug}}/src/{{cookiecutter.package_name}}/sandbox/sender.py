"""The sandbox as the API's webhook sender: each change becomes a signed event, delivered
to one receiver URL from a background thread, one at a time and in order.

Delivery is `replay.Sender`'s, the project's one HTTP sender: signed afresh on every
attempt (`signature.sign`), 429, 409, 5xx and network errors retried with exponential
backoff (honouring `Retry-After`), other 4xx final, as `retry_policy.py` says for every
caller of the API's rules. An event that fails every attempt is
logged and counted, and the next one goes.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
from collections import Counter

from .. import replay
from ..events import new_envelope

log = logging.getLogger(__name__)


class WebhookSender:
    """`emit(type, object)` from any thread; `wait_until_idle()` in tests; `close()` at the end."""

    def __init__(
        self,
        url: str,
        secret: str,
        max_attempts: int = 6,
        backoff: float = 0.5,
        retry_window: float = 0.0,
        loss: float = 0.0,
        seed: int | None = None,
    ):
        self.url = url
        self.results: list[replay.Result] = []  # every finished delivery, in order
        self.lost: list[dict] = []  # the envelopes `loss` kept from being sent at all
        self._loss, self._draws = loss, random.Random(seed)
        self._closing = threading.Event()
        options = replay.Options(
            url=url,
            secrets=(secret,),
            max_attempts=max_attempts,
            backoff_base=backoff,
            retry_window=retry_window,
        )
        # Waiting out a backoff on the closing flag lets `close()` end a retry loop at once.
        self._sender = replay.Sender(options, sleep=self._closing.wait)
        self._queue: queue.Queue[replay.Delivery | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    def emit(self, event_type: str, obj: dict) -> dict:
        """Queue one event about `obj`; return its envelope."""
        envelope = new_envelope(event_type, obj)
        body = json.dumps(envelope, separators=(",", ":")).encode()
        with self._idle:
            if self._loss and self._draws.random() < self._loss:
                self.lost.append(envelope)  # never sent: only a reconciliation finds it
                log.info("webhook %s %s lost (webhook_loss)", event_type, envelope["id"])
                return envelope
            self._pending += 1
        self._queue.put(replay.Delivery(body, event_type))
        return envelope

    def counts(self) -> dict[str, int]:
        """Events delivered (2xx), failed (after every attempt or the retry window), still
        queued, the attempts made in all, and those lost (never sent, `loss`)."""
        with self._idle:
            outcomes = Counter("delivered" if r.ok else "failed" for r in self.results)
            attempts = sum(r.attempts for r in self.results)
            return {
                "delivered": outcomes["delivered"],
                "failed": outcomes["failed"],
                "queued": self._pending,
                "attempts": attempts,
                "lost": len(self.lost),
            }

    def wait_until_idle(self, timeout: float = 30) -> bool:
        """Block until every emitted event is delivered or given up; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 5) -> None:
        """Stop: the delivery under way ends at its next wait; queued ones are dropped."""
        self._closing.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (delivery := self._queue.get()) is not None and not self._closing.is_set():
            try:
                result = self._sender.send(delivery)
            except Exception as exc:  # a bug must not silence every later event
                log.exception("webhook %s not sent", delivery.source)
                result = replay.Result(delivery, "network_error", None, 1, str(exc))
            level = logging.INFO if result.ok else logging.WARNING
            log.log(
                level,
                "webhook %s %s -> %s %s after %d attempt(s)",
                delivery.source,
                delivery.envelope.get("id"),
                result.status or "---",
                result.outcome,
                result.attempts,
            )
            with self._idle:
                self.results.append(result)
                self._pending -= 1
                self._idle.notify_all()
