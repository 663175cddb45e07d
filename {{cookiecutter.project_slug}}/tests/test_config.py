"""Settings from the environment, and what a person sees when one is wrong: a message that
names the variable to fix, never a traceback."""

import dataclasses
import re

import pytest

from {{ cookiecutter.package_name }} import cli
from {{ cookiecutter.package_name }}.config import ConfigError, settings_from_env
from {{ cookiecutter.package_name }}.worker import build_worker


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REDIS_URL", "localhost:6379", "REDIS_URL must start with redis://"),
        ("TW_LOG_LEVEL", "verbose", "TW_LOG_LEVEL must be DEBUG, INFO, WARNING"),
        ("TW_WORKER_METRICS_PORT", "99999", "TW_WORKER_METRICS_PORT must be at most 65535"),
        ("TW_METRICS_PORT", "-1", "TW_METRICS_PORT must be at least 0"),
        ("TW_SIGNATURE_TOLERANCE_SECONDS", "abc", "TW_SIGNATURE_TOLERANCE_SECONDS must be a whole"),
        ("TW_WEBHOOK_PATH", "webhooks", "TW_WEBHOOK_PATH must start with '/'"),
    ],
)
def test_a_wrong_setting_is_named(name, value, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_env({name: value})


def test_a_redis_url_is_never_echoed():
    """It may hold a password."""
    with pytest.raises(ConfigError) as refused:
        settings_from_env({"REDIS_URL": "redis:/:hunter2@cache.internal:6379"})
    assert "hunter2" not in str(refused.value)


def test_what_redis_and_logging_accept_is_accepted():
    for url in ("redis://cache:6379/1", "rediss://:pw@cache:6380/0", "unix:///run/redis.sock"):
        assert settings_from_env({"REDIS_URL": url}).redis_url == url
    assert settings_from_env({"TW_LOG_LEVEL": " warn "}).log_level == "WARN"
    assert settings_from_env({}).log_level == "INFO"


@pytest.fixture
def run_cli(monkeypatch, tmp_path, capsys):
    """`run_cli(*argv, **env)`: the command's exit status and standard error, run in-process
    away from any `.env`."""
    monkeypatch.chdir(tmp_path)

    def run(*argv, **env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        status = cli.main(list(argv))
        return status, capsys.readouterr().err

    return run


def test_a_redis_that_refuses_the_database_is_an_error_not_a_traceback(run_cli, redis_url):
    status, err = run_cli("events", "list", REDIS_URL=redis_url.rsplit("/", 1)[0] + "/99")
    assert status == 2
    located, error = err.splitlines()  # which Redis, then what went wrong with it
    assert located.startswith("Redis: 127.0.0.1:") and located.endswith(", db 99 (REDIS_URL)")
    assert error.startswith("error: Redis refused (") and error.endswith("check REDIS_URL")


def test_a_missing_file_is_named(run_cli):
    status, err = run_cli("sign", "nope.json", TW_WEBHOOK_SECRETS="whsec_test")
    assert (status, err) == (2, "error: no such file or folder: nope.json\n")


def test_a_handler_module_that_is_not_there_is_named(settings, redis_conn):
    settings = dataclasses.replace(settings, handler_modules=("partner.handlerz",))
    named = re.escape("TW_HANDLER_MODULES names 'partner.handlerz'")
    with pytest.raises(ConfigError, match=named):
        build_worker(settings, connection=redis_conn)


def test_a_handler_module_missing_a_dependency_keeps_its_traceback(
    settings, redis_conn, tmp_path, monkeypatch
):
    (tmp_path / "needs_more.py").write_text("import not_installed_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = dataclasses.replace(settings, handler_modules=("needs_more",))
    with pytest.raises(ModuleNotFoundError, match="not_installed_anywhere"):
        build_worker(settings, connection=redis_conn)


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "--copies", "0", "samples"],
        ["replay", "--concurrency", "-1", "samples"],
        ["events", "list", "--limit", "-1"],
        ["failed", "list", "--limit", "x"],
        # Past what Redis takes as a count: not a "Redis refused" after connecting.
        ["events", "list", "--limit", "99999999999999999999"],
        ["events", "export", "--limit", "99999999999999999999"],
    ],
)
def test_a_count_below_one_is_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as refused:
        cli.main(argv)
    assert refused.value.code == 2
    assert "want a whole number of at least 1" in capsys.readouterr().err


def test_an_export_type_that_is_no_pattern_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as refused:
        cli.main(["events", "export", "--type", "order*"])
    assert refused.value.code == 2
    assert "bad event type pattern 'order*'" in capsys.readouterr().err


# --- TW_REDIS_ACK_REPLICAS / TW_REDIS_ACK_TIMEOUT_MS --------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TW_REDIS_ACK_REPLICAS": "-1"}, "TW_REDIS_ACK_REPLICAS must be at least 0"),
        ({"TW_REDIS_ACK_REPLICAS": "one"}, "TW_REDIS_ACK_REPLICAS must be a whole number"),
        ({"TW_REDIS_ACK_REPLICAS": "17"}, "TW_REDIS_ACK_REPLICAS must be at most 16"),
        # 0 would make WAIT block for ever; over 4 s a WAIT would outlast the socket timeout.
        ({"TW_REDIS_ACK_TIMEOUT_MS": "0"}, "TW_REDIS_ACK_TIMEOUT_MS must be at least 1"),
        ({"TW_REDIS_ACK_TIMEOUT_MS": "5000"}, "TW_REDIS_ACK_TIMEOUT_MS must be at most 4000"),
    ],
)
def test_replica_acknowledgement_settings_are_checked(env, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_env(env)


def test_replica_acknowledgement_is_off_unless_asked_for():
    settings = settings_from_env({})
    assert (settings.redis_ack_replicas, settings.redis_ack_timeout_ms) == (0, 500)
    settings = settings_from_env({"TW_REDIS_ACK_REPLICAS": "2", "TW_REDIS_ACK_TIMEOUT_MS": "250"})
    assert (settings.redis_ack_replicas, settings.redis_ack_timeout_ms) == (2, 250)
