"""Take real traffic from one environment to another: capture on receiver A, `events
export`, `replay` into receiver B that has its own Redis; B's handlers run once per event.

Both receivers are real gunicorn + worker processes, each on its own private Redis.
"""

import json

import pytest
import redis
from processes import PROJECT_ROOT, cli, gunicorn, project_env, wait_for, worker
from recording_handlers import expected_runs, runs

from {{ cookiecutter.package_name }} import capture
from {{ cookiecutter.package_name }}.dev.embedded_redis import EmbeddedRedis
from {{ cookiecutter.package_name }}.replay import read_events

pytestmark = pytest.mark.e2e
SAMPLES = str(PROJECT_ROOT / "samples" / "events")
PATH = "{{ cookiecutter.webhook_path }}"


def test_capture_export_and_replay_into_a_second_receiver(redis_url, redis_conn, tmp_path):
    samples = [d.envelope for d in read_events([SAMPLES])]
    env_a = project_env(redis_url, TW_CAPTURE_MAX_EVENTS="1000")
    exported = tmp_path / "captured.jsonl"

    # Environment A: the samples arrive (twice: the repeats are duplicates, not archived).
    with gunicorn(env_a, tmp_path / "web-a.log", workers=2) as base_a:
        for _ in range(2):
            sent = cli("replay", "--url", base_a + PATH, "--concurrency", "4", SAMPLES, env=env_a)
            assert sent.returncode == 0, sent.stdout + sent.stderr
    assert redis_conn.xlen(capture.STREAM_KEY) == len(samples)
    archive = b"".join(v for _, f in redis_conn.xrange(capture.STREAM_KEY) for v in f.values())
    assert b"TW-Signature" not in archive and b"v1=" not in archive

    result = cli("events", "export", "-o", str(exported), env=env_a)
    assert result.returncode == 0, result.stderr
    assert f"exported {len(samples)} event(s)" in result.stderr
    received = [json.loads(line) for line in exported.read_text().splitlines()]
    assert sorted(received, key=lambda e: e["id"]) == sorted(samples, key=lambda e: e["id"])

    # Environment B: a fresh Redis, nothing in common with A but the export file.
    with EmbeddedRedis() as redis_b:
        conn_b = redis.Redis.from_url(redis_b.url)
        env_b = project_env(redis_b.url, TW_HANDLER_MODULES="recording_handlers")
        with (
            gunicorn(env_b, tmp_path / "web-b.log", workers=2) as base_b,
            worker(env_b, tmp_path / "worker-b.log"),
        ):
            first = cli("replay", "--url", base_b + PATH, str(exported), env=env_b)
            assert first.returncode == 0, first.stdout + first.stderr
            assert first.stdout.count(" accepted ") == len(samples)
            again = cli("replay", "--url", base_b + PATH, "--copies", "2", str(exported), env=env_b)
            assert again.stdout.count(" duplicate ") == 2 * len(samples)
            wait_for(lambda: runs(conn_b) == expected_runs(samples), timeout=30)
            listed = cli("events", "list", "--status", "processed", env=env_b)
            assert all(event["id"] in listed.stdout for event in samples), listed.stdout
        assert runs(conn_b) == expected_runs(samples)  # still once each, workers stopped
        assert not conn_b.exists(capture.STREAM_KEY)  # B does not capture: it was not asked
        conn_b.close()
    assert runs(redis_conn) == {}  # A had no recording handlers and no worker
