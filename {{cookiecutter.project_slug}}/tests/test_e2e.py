"""End to end: gunicorn + worker subprocesses + the `replay` command, over real HTTP."""

import json

import pytest
from processes import cli, gunicorn, project_env, wait_for, worker
from recording_handlers import expected_runs, runs

from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port

pytestmark = pytest.mark.e2e
SAMPLES = "samples/events"


def sample_events():
    from {{ cookiecutter.package_name }}.replay import read_events

    return [d.envelope for d in read_events([f"{SAMPLES}"])]


def test_replayed_samples_run_every_handler_once(redis_url, redis_conn, tmp_path):
    env = project_env(redis_url, TW_HANDLER_MODULES="recording_handlers")
    events = sample_events()
    expected = expected_runs(events)
    with gunicorn(env, tmp_path / "web.log") as base, worker(env, tmp_path / "worker.log"):
        url = base + "{{ cookiecutter.webhook_path }}"
        first = cli("replay", "--url", url, "--concurrency", "4", SAMPLES, env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert first.stdout.count(" accepted ") == len(events)
        # Deliver everything twice more, concurrently: all duplicates, nothing runs again.
        again = cli("replay", "--url", url, "--copies", "2", "--concurrency", "8", SAMPLES, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.count(" duplicate ") == 2 * len(events)
        wait_for(lambda: runs(redis_conn) == expected, timeout=30)
    log = (tmp_path / "worker.log").read_text()
    assert "order.created" in log and "price.updated" in log  # the handlers' log lines


def test_replay_reports_rejections_and_exits_non_zero(redis_url, tmp_path):
    env = project_env(redis_url)
    with gunicorn(env, tmp_path / "web.log", workers=1) as base:
        url = base + "{{ cookiecutter.webhook_path }}"
        wrong = cli("replay", "--url", url, "--secret", "whsec_wrong", SAMPLES, env=env)
        assert wrong.returncode == 1
        assert "rejected:signature_mismatch" in wrong.stdout
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"id": "evt bad", "type": "order.created"}))
        invalid = cli("replay", "--url", url, str(bad), env=env)
        assert invalid.returncode == 1
        assert "rejected:invalid_event" in invalid.stdout


def test_replay_to_a_dead_receiver_is_a_network_error(redis_url):
    env = project_env(redis_url)
    url = f"http://127.0.0.1:{free_port()}/webhooks"
    result = cli(
        "replay", "--url", url, "--max-attempts", "2", SAMPLES + "/01-order.created.json", env=env
    )
    assert result.returncode == 1
    assert "network_error" in result.stdout
