"""Acknowledged means replicated: no event lost or handled twice across a Redis failover.

A primary, a replica and three Sentinels (`redis_topology.py`), the receiver under
gunicorn and two workers reaching Redis through the Sentinels only, and a sender that
delivers each event until it is answered 2xx, as the API does. Handlers append their runs
to a file, which a failover cannot roll back.

The scenario that loses events without `TW_REDIS_ACK_REPLICAS`: mid-stream the replica is
paused and cut off from its primary (as a slow or partitioned replica is), so that what
the primary acknowledges from then on is certainly not on it; then the primary is killed,
the Sentinels promote the replica, and the old primary comes back as its replica.
"""

import contextlib
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import redis
from failover_handlers import runs
from processes import cli, gunicorn, wait_for, worker
from redis_topology import MASTER, Topology

from {{ cookiecutter.package_name }} import metrics
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.intake import open_queues
from {{ cookiecutter.package_name }}.testing import make_event, signed_headers

pytestmark = pytest.mark.e2e
WEBHOOK_PATH = "{{ cookiecutter.webhook_path }}"
RATE = 100  # deliveries per second, about what the workers below can handle
EVENTS = 260
# Each run takes this long: two workers then fall behind the sender, as in production
# under a burst, so that jobs wait in Redis when its primary dies.
HANDLER_SECONDS = "0.015"


class Sender:
    """Delivers events at `rate` per second from a few threads, each one again and again
    until it is answered 2xx: every other answer, and no answer, is retried with backoff."""

    def __init__(self, url: str, envelopes: list[dict], rate: float, threads: int = 4):
        self.url, self.envelopes, self.rate = url, envelopes, rate
        self.acknowledged: set[str] = set()
        self.answers: Counter = Counter()  # (status, error code) of every answer
        self.lock = threading.Lock()
        self.todo: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self._deliver, daemon=True) for _ in range(threads)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        threading.Thread(target=self._pace, daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self.finish(timeout=0)

    def _pace(self) -> None:
        for envelope in self.envelopes:
            self.todo.put(envelope)
            time.sleep(1 / self.rate)
        for _ in self.threads:
            self.todo.put(None)

    def _deliver(self) -> None:
        while (envelope := self.todo.get()) is not None:
            body = json.dumps(envelope).encode()
            wait, deadline = 0.05, time.monotonic() + 90
            while time.monotonic() < deadline:
                status, code = self._post(body)
                with self.lock:
                    self.answers[status, code] += 1
                    if 200 <= status < 300:
                        self.acknowledged.add(envelope["id"])
                        break
                time.sleep(wait)
                wait = min(wait * 2, 1.0)

    def _post(self, body: bytes) -> tuple[int, str]:
        request = urllib.request.Request(
            self.url + WEBHOOK_PATH, body, signed_headers(body), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, ""
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(ValueError, KeyError):
                return exc.code, json.loads(exc.read())["error"]["code"]
            return exc.code, ""
        except OSError:
            return 0, "no answer"

    def finish(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)

    def refused(self, code: str) -> int:
        return sum(n for (status, c), n in self.answers.items() if c == code)


def settled(nodes: Topology) -> bool:
    """Nothing waits, runs, or waits for a retry on the current master."""
    with contextlib.suppress(Exception):
        master = nodes.master()
        return all(
            master.llen(q.key) == 0
            and master.llen(q.intermediate_queue_key) == 0
            and master.zcard(q.started_job_registry.key) == 0
            and master.zcard(q.scheduled_job_registry.key) == 0
            for q in open_queues(master).values()
        )
    return False


def drain(nodes: Topology) -> None:
    """Wait until the work is done, and stays done for longer than a job stranded by the
    failover takes to come back (about 2 x TW_WORKER_LOST_AFTER_SECONDS)."""
    wait_for(lambda: settled(nodes), timeout=30)
    time.sleep(3)
    wait_for(lambda: settled(nodes), timeout=30)


@contextlib.contextmanager
def deployed(tmp_path: Path, ack_replicas: int):
    """The topology, the receiver and two workers; yields (nodes, receiver URL, runs file)."""
    runs_file = tmp_path / "runs.txt"
    with Topology(tmp_path) as nodes:
        env = nodes.env(
            TW_HANDLER_MODULES="failover_handlers",
            TW_REDIS_ACK_REPLICAS=str(ack_replicas),
            TW_REDIS_ACK_TIMEOUT_MS="200",
            TW_WORKER_LOST_AFTER_SECONDS="2",
            TEST_RUNS_FILE=str(runs_file),
            TEST_HANDLER_SECONDS=HANDLER_SECONDS,
        )
        logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
        with (
            gunicorn(env, tmp_path / "web.log", workers=3) as url,
            worker(env, logs[0]),
            worker(env, logs[1]),
        ):
            wait_for(lambda: all("listening on" in log.read_text() for log in logs))
            yield nodes, url, runs_file


def lag_then_failover(tmp_path: Path, ack_replicas: int) -> tuple[Sender, Counter]:
    """The issue's scenario; returns the sender (what was acknowledged) and the runs."""
    envelopes = [make_event() for _ in range(EVENTS)]
    with deployed(tmp_path, ack_replicas) as (nodes, url, runs_file):
        primary, replica = nodes.primary_port, nodes.replica_port
        with Sender(url, envelopes, RATE) as sender:
            time.sleep(1.0)
            nodes.pause(replica)
            nodes.cut_off_replicas(primary)
            time.sleep(1.5)  # the primary alone acknowledges what it takes now
            nodes.kill(primary)
            nodes.resume(replica)
            new_primary = nodes.wait_for_failover(primary)
            nodes.rejoin_as_replica(primary, new_primary)
            sender.finish(timeout=60)
        assert len(sender.acknowledged) > EVENTS // 2, sender.answers
        drain(nodes)
        return sender, runs(runs_file)


def test_with_ack_replicas_every_acknowledged_event_is_handled_exactly_once(tmp_path):
    for trial in range(2):
        directory = tmp_path / f"trial-{trial}"
        directory.mkdir()
        sender, handled = lag_then_failover(directory, ack_replicas=1)
        assert len(sender.acknowledged) == EVENTS, sender.answers  # all got through
        lost = sender.acknowledged - set(handled)
        doubled = {event: n for event, n in handled.items() if n > 1}
        assert not lost and not doubled, (len(lost), len(doubled), sender.answers)
        # The sender was told to come back while the replica could not confirm.
        assert sender.refused("not_replicated") > 0, sender.answers


def test_without_ack_replicas_the_same_failover_loses_or_doubles_events(tmp_path):
    """The scenario above is not too gentle: without waiting for the replica, the kit
    loses acknowledged events, or handles some twice."""
    sender, handled = lag_then_failover(tmp_path, ack_replicas=0)
    lost = sender.acknowledged - set(handled)
    doubled = {event: n for event, n in handled.items() if n > 1}
    assert lost or doubled, sender.answers
    assert sender.refused("not_replicated") == 0


def test_failover_without_lag_loses_nothing_and_workers_resume(tmp_path):
    envelopes = [make_event() for _ in range(EVENTS)]
    with deployed(tmp_path, ack_replicas=1) as (nodes, url, runs_file):
        primary = nodes.primary_port
        with Sender(url, envelopes, RATE) as sender:
            time.sleep(1.5)  # jobs are waiting and running when the primary dies
            nodes.kill(primary)
            new_primary = nodes.wait_for_failover(primary)
            nodes.rejoin_as_replica(primary, new_primary)
            back = time.monotonic()
            before = sum(runs(runs_file).values())
            # The workers take up the work on the new primary within seconds.
            wait_for(lambda: sum(runs(runs_file).values()) > before, timeout=10)
            sender.finish(timeout=60)
        assert time.monotonic() - back < 60
        assert len(sender.acknowledged) == EVENTS, sender.answers
        drain(nodes)
        handled = runs(runs_file)
        assert set(handled) == sender.acknowledged
        assert set(handled.values()) == {1}, {e: n for e, n in handled.items() if n > 1}


def test_replica_down_means_503_not_replicated_until_it_returns(tmp_path):
    with deployed(tmp_path, ack_replicas=1) as (nodes, url, runs_file):
        nodes.kill(nodes.replica_port)
        envelopes = [make_event() for _ in range(5)]
        with Sender(url, envelopes, rate=50, threads=2) as sender:
            time.sleep(3)
            # Nothing is acknowledged that no replica holds.
            assert sender.acknowledged == set(), sender.answers
            assert sender.refused("not_replicated") > 0, sender.answers
            nodes.rejoin_as_replica(nodes.replica_port, nodes.primary_port)
            sender.finish(timeout=30)
        assert len(sender.acknowledged) == 5, sender.answers
        wait_for(lambda: set(runs(runs_file)) == sender.acknowledged, timeout=20)
        assert set(runs(runs_file).values()) == {1}


# --- the receiver alone, through Flask's test client ------------------------------------


def test_not_replicated_is_a_503_in_the_error_shape_for_first_receipts_and_duplicates(
    redis_conn, settings, signed_post
):
    """The test's Redis has no replica: no write is ever confirmed."""
    from {{ cookiecutter.package_name }}.app import create_app

    def sample(name: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, {"by": "intake"}) or 0.0

    refused_before = sample("tw_redis_not_replicated_total")
    waits_before = sample("tw_redis_replica_wait_seconds_sum")
    waiting = Settings(**{**settings.__dict__, "redis_ack_replicas": 1, "redis_ack_timeout_ms": 50})
    client = create_app(waiting, redis_conn).test_client()
    event = make_event()
    for _ in range(2):  # stored the first time (on the primary alone), a duplicate then
        answer = signed_post(client, event)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "5"
        error = answer.get_json()["error"]
        assert error["code"] == "not_replicated"
        assert "0 of 1 replica(s)" in error["message"]
        assert error["requestId"] == answer.headers["X-Request-Id"]
    # Counted for operators: two refusals, each after a WAIT of about 50 ms.
    assert sample("tw_redis_not_replicated_total") - refused_before == 2
    assert sample("tw_redis_replica_wait_seconds_sum") - waits_before >= 0.1
    plain = create_app(settings, redis_conn).test_client()
    assert signed_post(plain, event).status_code == 200  # it was stored all the same


def test_a_demoted_primary_keeps_no_process_attached(tmp_path):
    """`SENTINEL FAILOVER`: the old primary lives on as a replica, so a connection left on
    it would get READONLY for every write. The receiver and the workers move over."""
    envelopes = [make_event() for _ in range(150)]
    with deployed(tmp_path, ack_replicas=1) as (nodes, url, runs_file):
        old = nodes.primary_port
        with Sender(url, envelopes, RATE) as sender:
            time.sleep(0.7)
            nodes.sentinel(0).sentinel_failover(MASTER)
            nodes.wait_for_failover(old)
            sender.finish(timeout=60)
        assert len(sender.acknowledged) == len(envelopes), sender.answers
        assert not [status for status, _ in sender.answers if status >= 500 and status != 503]
        drain(nodes)
        handled = runs(runs_file)
        assert set(handled) == sender.acknowledged
        assert set(handled.values()) == {1}
        # Nobody talks to the demoted primary but the Sentinels (and this test): every
        # process reconnected through them, none stays on a Redis that answers READONLY.
        looking = redis.Redis(port=old)
        me = looking.client_id()
        others = [
            client
            for client in looking.client_list()
            if int(client["id"]) != me
            and "M" not in client["flags"]  # its link to the new primary
            and not client["name"].startswith("sentinel-")
        ]
        assert others == []
        # A command run now finds the new primary too.
        listed = cli("events", "list", "--limit", "3", env=nodes.env(), timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count("processed") == 3, listed.stdout


def test_a_primary_refusing_writes_for_want_of_replicas_answers_not_replicated(
    redis_conn, settings, signed_post
):
    """`min-replicas-to-write` on a primary with no replica: Redis answers NOREPLICAS (in
    a script's error on Redis 6), which is the same as too few confirmations."""
    from {{ cookiecutter.package_name }}.app import create_app

    client = create_app(settings).test_client()  # its own client, as deployed
    redis_conn.config_set("min-replicas-to-write", 1)
    try:
        answer = signed_post(client, make_event())
    finally:
        redis_conn.config_set("min-replicas-to-write", 0)
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert error["code"] == "not_replicated"
    assert "min-replicas-to-write" in error["message"]
    assert signed_post(client, make_event()).status_code == 202


def test_a_script_redis_lost_is_loaded_again_and_no_reply_is_left_behind(redis_conn, settings):
    """The intake script and WAIT go out together: when Redis has lost the script, both
    replies are read before it is loaded again, so no answer is taken for another's."""
    from {{ cookiecutter.package_name }}.intake import Intake
    from {{ cookiecutter.package_name }}.replication import NotReplicated

    waiting = Settings(**{**settings.__dict__, "redis_ack_replicas": 1, "redis_ack_timeout_ms": 10})
    intake = Intake(redis_conn, waiting)
    event = make_event()
    redis_conn.script_flush()
    with pytest.raises(NotReplicated):  # stored, but no replica here to confirm it
        intake.submit(event, secret_fingerprint="abc")
    with pytest.raises(NotReplicated):
        intake.submit(event, secret_fingerprint="abc")
    # The same connection answers the next command with its own reply.
    plain = Intake(redis_conn, settings)
    assert plain.submit(event) is False  # a duplicate: it was stored the first time
    assert plain.submit(make_event()) is True
