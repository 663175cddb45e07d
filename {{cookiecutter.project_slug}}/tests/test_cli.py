"""What a command's failures become: what the person typed or set wrong is one `error:`
line and exit 2 (the status that also stops every `worker --processes` child); anything
else is a bug, which keeps its traceback and exits 1."""

import pytest
from processes import PACKAGE, project_env, python
from processes import cli as command

from {{ cookiecutter.package_name }} import cli, event_status


@pytest.fixture
def run_cli(redis_url, monkeypatch, tmp_path, capsys):
    """`run_cli(*argv)`: the command's exit status and standard error, run in-process
    against the private Redis, away from any `.env`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("TW_WEBHOOK_SECRETS", "whsec_test")

    def run(*argv):
        status = cli.main(list(argv))
        return status, capsys.readouterr().err

    return run


def errors(err: str) -> list[str]:
    """The lines of `err` but the one naming the Redis a command reads."""
    return [line for line in err.splitlines() if not line.startswith("Redis: ")]


def test_usage_errors_are_one_line_and_exit_2(run_cli, tmp_path):
    neither = run_cli("failed", "retry")
    assert neither == (2, "error: give event ids, or --all or filters (not both)\n")
    (tmp_path / "broken.json").write_text("{")
    status, err = run_cli("replay", "--url", "http://127.0.0.1:1/webhooks/tw", "broken.json")
    assert status == 2 and errors(err) == [err.strip()]
    assert err.startswith("error: broken.json is not JSON")
    missing = run_cli("replay", "--url", "http://127.0.0.1:1/webhooks/tw", "nowhere/")
    assert missing == (2, "error: no such file or folder: nowhere\n")  # the path, not None
    status, err = run_cli("events", "export", "-o", "nowhere/events.jsonl")
    assert (status, errors(err)) == (2, ["error: no such file or folder: nowhere/events.jsonl"])


def test_a_url_that_is_no_url_is_refused_by_the_parser(run_cli, capsys):
    with pytest.raises(SystemExit) as refused:
        run_cli("replay", "--url", "127.0.0.1:8000/webhooks/tw", "samples")
    assert refused.value.code == 2
    assert "want an http(s) URL, got '127.0.0.1:8000/webhooks/tw'" in capsys.readouterr().err


def test_a_value_error_from_a_bug_is_not_a_usage_error(run_cli, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug, not something the person typed")

    monkeypatch.setattr(event_status, "list_events", broken)
    with pytest.raises(ValueError, match="a bug"):
        run_cli("events", "list")


def test_a_bug_shows_its_traceback_and_exits_1():
    ran = python(
        "import sys\n"
        f"from {PACKAGE} import cli, event_status\n"
        "def broken(*args, **kwargs):\n"
        "    raise ValueError('a bug, not something the person typed')\n"
        "event_status.list_events = broken\n"
        "sys.exit(cli.main(['events', 'list']))\n"
    )
    assert ran.returncode == 1, ran.stderr
    assert "Traceback (most recent call last)" in ran.stderr
    assert ran.stderr.rstrip().endswith("ValueError: a bug, not something the person typed")
    assert "error: " not in ran.stderr


def test_python_m_runs_the_commands():
    ran = command("sign", "--help", env=project_env("redis://unused"), timeout=30)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("usage: ") and "TW_WEBHOOK_SECRETS" in ran.stdout
