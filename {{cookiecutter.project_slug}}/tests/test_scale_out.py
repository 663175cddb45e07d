"""Scale-out: several receivers and workers sharing one Redis, and the ways to reach it.

Two gunicorn instances (as on two hosts) and three worker processes share the test's
private Redis; every event is delivered four times, to both receivers at once, and each
handler must still run exactly once per event. Redis Sentinel is exercised with a real
`redis-server --sentinel`; TLS (`rediss://`) is checked on the client that gets built,
since the test Redis speaks no TLS.
"""

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from processes import (
    PROJECT_ROOT,
    gunicorn,
    project_env,
    running,
    totals,
    wait_for,
    worker,
    worker_metrics_ports,
)
from recording_handlers import expected_runs, runs
from redis.sentinel import SentinelManagedSSLConnection

from {{ cookiecutter.package_name }}.config import Settings, settings_from_env
from {{ cookiecutter.package_name }}.connection import connect
from {{ cookiecutter.package_name }}.dev.embedded_redis import find_redis_server, free_port
from {{ cookiecutter.package_name }}.intake import Intake
from {{ cookiecutter.package_name }}.replay import read_events, with_fresh_ids
from {{ cookiecutter.package_name }}.testing import TEST_SECRET, make_event

pytestmark = pytest.mark.e2e
PACKAGE = "{{ cookiecutter.package_name }}"
WEBHOOK_PATH = "{{ cookiecutter.webhook_path }}"
ROUNDS = 3  # the samples, each time with fresh ids
WORKERS = 3


def replay(url: str, path: Path, env: dict) -> subprocess.Popen:
    command = [
        sys.executable, "-m", PACKAGE, "replay", "--url", url + WEBHOOK_PATH,
        "--copies", "2", "--shuffle", "--concurrency", "4", "-q", str(path),
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def metrics_port_of(log: Path) -> int:
    """The port a worker says it serves its metrics on."""
    [port] = wait_for(lambda: worker_metrics_ports(log)).values()
    return port


def test_two_receivers_and_three_workers_handle_each_event_once(redis_url, redis_conn, tmp_path):
    events = [d for _ in range(ROUNDS) for d in with_fresh_ids(read_events(["samples/events"]))]
    envelopes = [d.envelope for d in events]
    batch = tmp_path / "events.jsonl"
    batch.write_text("".join(json.dumps(e) + "\n" for e in envelopes))
    metrics_port = free_port()  # each worker takes the first free port from this one
    env = project_env(
        redis_url,
        TW_HANDLER_MODULES="recording_handlers",
        TW_WORKER_METRICS_PORT=str(metrics_port),
    )
    with contextlib.ExitStack() as stack:
        receivers = {}  # base URL -> its metrics URL (gunicorn's master, a port of its own)
        for name in ("a", "b"):
            port = free_port()
            web_env = {**env, "TW_METRICS_PORT": str(port)}
            base = stack.enter_context(gunicorn(web_env, tmp_path / f"web-{name}.log", workers=2))
            receivers[base] = f"http://127.0.0.1:{port}/metrics"
        for number in range(WORKERS):
            stack.enter_context(worker(env, tmp_path / f"worker-{number}.log"))
        # Every event twice to each receiver, both receivers at the same time.
        senders = [replay(base, batch, env) for base in receivers]
        for sender in senders:
            output = sender.communicate(timeout=60)[0].decode()
            assert sender.returncode == 0, output
        expected = expected_runs(envelopes)
        wait_for(lambda: runs(redis_conn) == expected, timeout=30)
        time.sleep(0.5)  # a second run of anything would show up now
        assert runs(redis_conn) == expected

        # The receivers' metrics add up across hosts: each event enqueued once in all.
        scrapes = receivers.values()
        received = [totals(url, "tw_webhooks_received_total") for url in scrapes]
        enqueued = sum(totals(url, "tw_webhooks_enqueued_total") for url in scrapes)
        duplicates = sum(totals(url, "tw_webhooks_duplicate_total") for url in scrapes)
        assert received == [2 * len(events), 2 * len(events)]
        assert (enqueued, duplicates) == (len(events), 3 * len(events))
        # Each worker serves its own handler metrics; together they saw every run.
        ports = [metrics_port_of(tmp_path / f"worker-{number}.log") for number in range(WORKERS)]
        assert len(set(ports)) == WORKERS and min(ports) >= metrics_port
        per_worker = [
            totals(
                f"http://127.0.0.1:{port}/metrics",
                "tw_handler_duration_seconds_count",
                handler_prefix="recording_handlers.",
            )
            for port in ports
        ]
    assert sum(per_worker) == len(expected)
    assert sum(1 for count in per_worker if count) >= 2, per_worker  # the work was shared


# --- Redis Sentinel and TLS ------------------------------------------------------------


@pytest.fixture
def sentinel(redis_url, tmp_path):
    """A real Sentinel watching the test's Redis as master `tw-master`; yields its port."""
    master = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    port = free_port()
    config = tmp_path / "sentinel.conf"  # Sentinel rewrites its own config file
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor tw-master {master['host']} {master['port']} 1\n"
    )
    command = [find_redis_server(), str(config), "--sentinel"]
    with running(command, project_env(redis_url), tmp_path / "sentinel.log"):
        client = redis.Redis(port=port)
        wait_for(lambda: _answers(client, "tw-master"), timeout=10)
        yield port


def _answers(client: redis.Redis, name: str):
    try:
        return client.sentinel_get_master_addr_by_name(name)
    except redis.RedisError:
        return None


def test_sentinel_names_the_master_the_receiver_writes_to(sentinel, redis_conn, redis_url):
    env = {
        "TW_WEBHOOK_SECRETS": TEST_SECRET,
        # Host and port here are ignored (nobody listens there): Sentinel names the master.
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/{redis_conn.get_connection_kwargs()['db']}",
        "TW_REDIS_SENTINELS": f"127.0.0.1:{sentinel}",
        "TW_REDIS_SENTINEL_MASTER": "tw-master",
    }
    settings = settings_from_env(env)
    client = connect(settings)
    event = make_event()
    assert Intake(client, settings).submit(event) is True
    assert redis_conn.exists(f"rq:job:{event['id']}")
    assert Intake(client, settings).submit(event) is False


def test_rediss_urls_build_tls_connections():
    client = connect(Settings(redis_url="rediss://:s3cret@redis.example.com:6380/2"))
    pool = client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.example.com", 6380, 2)
    assert kwargs["password"] == "s3cret"
    assert kwargs["socket_timeout"] and kwargs["socket_connect_timeout"]


def test_sentinel_with_rediss_url_uses_tls_to_the_master():
    settings = Settings(
        redis_url="rediss://:s3cret@ignored:1/3",
        redis_sentinels=(("sentinel-1", 26379), ("sentinel-2", 26379)),
        redis_sentinel_master="orders-master",
    )
    client = connect(settings)
    pool = client.connection_pool
    assert pool.connection_class is SentinelManagedSSLConnection
    assert pool.service_name == "orders-master"
    assert pool.connection_kwargs["db"] == 3
    assert pool.connection_kwargs["password"] == "s3cret"
    sentinels = pool.sentinel_manager.sentinels
    hosts = [s.connection_pool.connection_kwargs["host"] for s in sentinels]
    assert hosts == ["sentinel-1", "sentinel-2"]
