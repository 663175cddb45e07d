"""Fault: Redis dies (SIGKILL) during a replay of thousands of events, then comes back.

The sender retries 5xx with exponential backoff, so the promise is: while Redis is away
the receiver answers 503 with Retry-After and never 2xx; once it is back, every event ends
stored and every handler runs exactly once for it. Redis runs with the persistence the
deploy files ship (AOF, fsync on every write), so what it acknowledged survives the kill.
"""

import contextlib
import json
import threading
import time

import pytest
from processes import gunicorn, project_env, wait_for, worker
from recording_handlers import expected_runs, runs

from {{ cookiecutter.package_name }}.dev.embedded_redis import EmbeddedRedis
from {{ cookiecutter.package_name }}.replay import Delivery, Options, Sender, run
from {{ cookiecutter.package_name }}.testing import TEST_SECRET, make_event

pytestmark = pytest.mark.e2e

EVENTS = 2000
OUTAGE_SECONDS = 4


class RecordingSender(Sender):
    """The replay sender, writing down every attempt: (start, end, status, Retry-After)."""

    attempts: list

    def _post(self, body):
        started = time.monotonic()
        try:
            status, headers, payload = super()._post(body)
        except Exception:
            self.attempts.append((started, time.monotonic(), None, None))
            raise
        self.attempts.append((started, time.monotonic(), status, headers.get("Retry-After")))
        return status, headers, payload


def test_redis_killed_mid_replay_loses_and_doubles_nothing(
    redis_url, redis_conn, tmp_path, monkeypatch
):
    events = [
        make_event("order.created" if n % 2 else "price.updated", {"n": n}) for n in range(EVENTS)
    ]
    deliveries = [Delivery(json.dumps(e).encode(), "test") for e in events]
    with EmbeddedRedis(appendonly=True) as server:
        env = project_env(
            server.url,
            TW_HANDLER_MODULES="recording_handlers",
            TW_WORKER_LOST_AFTER_SECONDS="3",
            # The handlers' effects go to another Redis, which stays up, as a partner's
            # database would: what is tested is the receiver's own bookkeeping.
            TEST_RECORD_REDIS_URL=redis_url,
        )
        with (
            gunicorn(env, tmp_path / "web.log") as base,
            worker(env, tmp_path / "worker1.log"),
            worker(env, tmp_path / "worker2.log"),
        ):
            # A worker that cannot reach Redis at start exits (its supervisor restarts it);
            # these must be running before Redis goes away.
            for n in (1, 2):
                wait_for(lambda n=n: "listening on" in (tmp_path / f"worker{n}.log").read_text())
            options = Options(
                url=base + "{{ cookiecutter.webhook_path }}",
                secrets=(TEST_SECRET,),
                concurrency=16,
                max_attempts=40,
                backoff_base=0.1,
                backoff_max=2.0,
            )
            attempts: list = []
            monkeypatch.setattr(RecordingSender, "attempts", attempts, raising=False)
            monkeypatch.setattr("{{ cookiecutter.package_name }}.replay.Sender", RecordingSender)
            done = []
            outage = {}

            def break_redis():
                wait_for(lambda: len(done) >= EVENTS // 4, timeout=60, interval=0.01)
                outage["down"] = time.monotonic()
                server.kill()
                time.sleep(OUTAGE_SECONDS)
                outage["up"] = time.monotonic()
                server.start()

            breaker = threading.Thread(target=break_redis)
            breaker.start()
            results = run(deliveries, options, on_result=done.append)
            breaker.join()
            assert [r for r in results if not r.ok] == []
            expected = expected_runs(events)
            with contextlib.suppress(AssertionError):
                wait_for(lambda: runs(redis_conn) == expected, timeout=90, interval=0.5)
            # Settle, then check again: nothing runs a second time late.
            time.sleep(1)
            final = runs(redis_conn)

    missing = sorted(k for k in expected if k not in final)
    doubled = sorted(k for k, v in final.items() if v > 1)
    assert (missing, doubled) == ([], []), (len(missing), len(doubled), tmp_path)
    down, up = outage["down"], outage["up"]
    during = [a for a in attempts if a[0] > down + 0.05 and a[1] < up]
    answered = [a for a in during if a[2] is not None]
    assert answered, "no request was answered while Redis was down"
    assert [a for a in answered if 200 <= a[2] < 300] == []
    assert {(a[2], a[3]) for a in answered} == {(503, "5")}
    retried = sum(r.attempts - 1 for r in results)
    print(
        f"\nredis outage: trials=1 events={EVENTS} losses=0 duplicates=0 "
        f"outage={OUTAGE_SECONDS}s 503s-while-down={len(answered)} retries={retried} "
        f"recovery={max(a[1] for a in attempts) - up:.1f}s to last answer"
    )
