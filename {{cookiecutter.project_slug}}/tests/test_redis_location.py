"""Commands that read Redis say which one they read, and find the Redis of a running `dev`.

`events list` once read an unrelated Redis on localhost:6379 and said "no events". Now
every command that reads Redis names it on stderr (host, port, database; never a
password), and while REDIS_URL is unset, a `dev` running from the same directory lends its
embedded Redis through a state file, unless that file is stale.
"""

import json
import os
import subprocess
import sys

import pytest
from processes import cli, project_env

from {{ cookiecutter.package_name }}.cli.locate import located
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.connection import describe
from {{ cookiecutter.package_name }}.dev import state as devstate
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.intake import Intake
from {{ cookiecutter.package_name }}.testing import make_event


@pytest.mark.parametrize(
    ("url", "sentinels", "described"),
    [
        ("redis://localhost:6379/0", (), "localhost:6379, db 0"),
        ("redis://:s3cret@cache.internal:6380/2", (), "cache.internal:6380, db 2"),
        ("rediss://app:s3cret@cache.internal:6380/1", (), "cache.internal:6380, db 1 over TLS"),
        ("unix:///run/redis.sock?db=3&password=s3cret", (), "unix socket /run/redis.sock, db 3"),
        (
            "redis://:s3cret@ignored/4",
            (("s1", 26379), ("s2", 26379)),
            "master 'mymaster' of the Sentinels s1:26379, s2:26379, db 4",
        ),
    ],
)
def test_a_redis_is_described_without_its_password(url, sentinels, described):
    assert describe(Settings(redis_url=url, redis_sentinels=sentinels)) == described


@pytest.fixture
def no_redis_url(tmp_path, monkeypatch):
    """A directory without `.env`, and no REDIS_URL: as on a fresh checkout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("TW_REDIS_SENTINELS", raising=False)
    return tmp_path


def test_without_redis_url_or_dev_the_default_is_named(no_redis_url, capsys):
    settings = located(Settings())
    assert settings.redis_url == Settings().redis_url
    line = "Redis: localhost:6379, db 0 (REDIS_URL is unset: the default)\n"
    assert capsys.readouterr().err == line


def a_finished_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    ("state", "why"),
    [
        (lambda url: {"redisUrl": url, "pid": a_finished_pid()}, "left by a dev (pid {pid})"),
        (
            lambda url: {"redisUrl": f"redis://127.0.0.1:{free_port()}/0", "pid": os.getpid()},
            "whose Redis does not answer",
        ),
        (lambda url: "not json", "which is unreadable"),
    ],
    ids=["dev-gone", "redis-gone", "unreadable"],
)
def test_a_stale_state_file_is_ignored_and_said_so(no_redis_url, redis_url, capsys, state, why):
    content = state(redis_url)
    (no_redis_url / devstate.STATE_FILE).write_text(json.dumps(content))
    settings = located(Settings())
    assert settings.redis_url == Settings().redis_url
    err = capsys.readouterr().err
    pid = content.get("pid") if isinstance(content, dict) else None
    assert err.startswith("Redis: localhost:6379, db 0 (REDIS_URL is unset: the default, ")
    assert f"ignoring {devstate.STATE_FILE}, {why.format(pid=pid)}" in err
    assert err.count("\n") == 1


def test_commands_read_the_running_dev_redis_and_say_so(tmp_path, redis_url, redis_conn, settings):
    event = make_event("order.created")
    Intake(redis_conn, settings).submit(event)
    env = project_env(redis_url)
    del env["REDIS_URL"]
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    with devstate.published(redis_url, tmp_path / devstate.STATE_FILE):
        listed = cli("events", "list", env=env, cwd=tmp_path)
        failed = cli("failed", "list", env=env, cwd=tmp_path)
    assert not (tmp_path / devstate.STATE_FILE).exists()
    assert listed.returncode == 0, listed.stderr
    assert event["id"] in listed.stdout
    source = f"(REDIS_URL is unset: the running dev's, from {devstate.STATE_FILE})"
    line = f"Redis: 127.0.0.1:{port}, db 0 {source}\n"
    assert listed.stderr == line
    assert (failed.stdout, failed.stderr) == ("no failed events\n", line)


def test_redis_url_wins_and_is_named(tmp_path, redis_url):
    env = project_env(redis_url)
    (tmp_path / devstate.STATE_FILE).write_text('{"redisUrl": "redis://elsewhere:1/0", "pid": 1}')
    listed = cli("events", "list", env=env, cwd=tmp_path)
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    assert (listed.returncode, listed.stdout) == (0, "no events\n")
    assert listed.stderr == f"Redis: 127.0.0.1:{port}, db 0 (REDIS_URL)\n"
