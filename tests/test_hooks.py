"""The hooks: validators and post-generation helpers as units, then through real bakes."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from hooks import post_gen_project as post
from hooks import pre_gen_project as pre
from tests.helpers import run_cookiecutter_cli

ERROR_LINE = re.compile(r"^ERROR: .+ \(try: .+\)$")


# --- pre-generation validators -------------------------------------------------------


@pytest.mark.parametrize(
    "slug",
    ["tw-webhook-receiver", "acme", "acme2", "acme-tickets-hooks", "a1-b2-c3", "x"],
)
def test_good_slugs(slug):
    assert pre.check_slug(slug) is None


@pytest.mark.parametrize(
    "slug",
    [
        "My Project!",
        "-x",
        "x-",
        "import os",
        "",
        "Acme",
        "acme--hooks",
        "acme_hooks",
        "1acme",
        "acme.hooks",
        "acme/../hooks",
        "obrien's-hooks",
    ],
)
def test_bad_slugs(slug):
    error = pre.check_slug(slug)
    assert error is not None
    suggestion = re.search(r"\(try: (.+)\)$", error).group(1)
    assert pre.check_slug(suggestion) is None, error


@pytest.mark.parametrize(
    "name", ["tw_webhook_receiver", "acme", "acme_tickets_hooks", "_private", "a1"]
)
def test_good_package_names(name):
    assert pre.check_package_name(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Acme",
        "acme-hooks",
        "1acme",
        "import os",
        "acme.hooks",
        # Python keywords
        "import",
        "class",
        "lambda",
        # the stack and the modules the project imports
        "flask",
        "redis",
        "rq",
        "gunicorn",
        "werkzeug",
        "pytest",
        "test",
        "tests",
        "json",
        "logging",
        "secrets",
        "signal",
        # any other standard library module
        "os",
        "email",
        "hmac",
    ],
)
def test_bad_package_names(name):
    error = pre.check_package_name(name)
    assert error is not None
    suggestion = re.search(r"\(try: (.+)\)$", error).group(1)
    assert pre.check_package_name(suggestion) is None, error


@pytest.mark.parametrize(
    "path",
    [
        "/webhooks/tw",
        "/hooks/tickets",
        "/tw",
        "/v1/webhooks/tickets-wholesale",
        "/a.b_c~d-e",
        "/healthz/tw",
    ],
)
def test_good_webhook_paths(path):
    assert pre.check_webhook_path(path) is None


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "webhooks/tw",
        "/webhooks/tw/",
        "/webhooks//tw",
        "/webhooks/tw?x=1",
        "/webhooks/t w",
        "/webhooks/<tw>",
        "/webhooks/../tw",
        "/webhooks/./tw",
        "/healthz",
        "/readyz",
        "/metrics",
        "/webhooks/{{tw}}",
    ],
)
def test_bad_webhook_paths(path):
    error = pre.check_webhook_path(path)
    assert error is not None
    suggestion = re.search(r"\(try: (.+)\)$", error).group(1)
    assert pre.check_webhook_path(suggestion) is None, error


@pytest.mark.parametrize("email", ["you@example.com", "a.b+c@mail.example.org"])
def test_good_emails(email):
    assert pre.check_email(email) is None


@pytest.mark.parametrize("email", ["", "you", "you@", "you@example", "a b@example.com"])
def test_bad_emails(email):
    assert pre.check_email(email) is not None


def test_free_text_must_be_one_nonempty_line():
    assert pre.check_text("project_name", 'O\'Brien "Tickets" Receiver') is None
    assert pre.check_text("project_name", "  ") is not None
    assert pre.check_text("description", "two\nlines") is not None


def test_validate_reports_the_first_problem_only():
    answers = {
        "project_name": "TW Webhook Receiver",
        "project_slug": "tw-webhook-receiver",
        "package_name": "tw_webhook_receiver",
        "description": "Receives webhooks.",
        "author_name": "Your Name",
        "author_email": "you@example.com",
        "webhook_path": "/webhooks/tw",
    }
    assert pre.validate(answers) is None
    bad = {**answers, "project_slug": "Bad Slug", "webhook_path": "/healthz"}
    assert "project_slug" in pre.validate(bad)


# --- post-generation helpers ---------------------------------------------------------

ALL_DEPLOY_FILES = [
    "Dockerfile",
    ".dockerignore",
    "compose.yaml",
    "deploy/systemd/x-web.service",
    "Procfile",
]


def make_deploy_files(root: Path) -> None:
    for relative in ALL_DEPLOY_FILES:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("x\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("docker", {"Dockerfile", ".dockerignore", "compose.yaml"}),
        ("systemd", {"deploy/systemd/x-web.service"}),
        ("procfile", {"Procfile"}),
        ("all", set(ALL_DEPLOY_FILES)),
        ("none", set()),
    ],
)
def test_remove_deploy_files(tmp_path, target, kept):
    make_deploy_files(tmp_path)
    post.remove_deploy_files(tmp_path, target)
    present = {r for r in ALL_DEPLOY_FILES if (tmp_path / r).exists()}
    assert present == kept
    assert (tmp_path / "deploy").exists() == (target in ("systemd", "all"))


def test_remove_deploy_files_tolerates_absent_files(tmp_path):
    post.remove_deploy_files(tmp_path, "none")
    assert list(tmp_path.iterdir()) == []


def test_remove_deploy_files_keeps_a_deploy_dir_with_other_content(tmp_path):
    make_deploy_files(tmp_path)
    (tmp_path / "deploy" / "notes.txt").write_text("mine\n", encoding="utf-8")
    post.remove_deploy_files(tmp_path, "docker")
    assert (tmp_path / "deploy" / "notes.txt").exists()
    assert not (tmp_path / "deploy" / "systemd").exists()


def test_unknown_deploy_target_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        post.remove_deploy_files(tmp_path, "kubernetes")


def test_remove_github_actions(tmp_path):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    post.remove_github_actions(tmp_path)
    assert not (tmp_path / ".github").exists()
    post.remove_github_actions(tmp_path)  # absent: still fine


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("yes", True), ("no", False), ("false", False)],
)
def test_as_bool(value, expected):
    assert post.as_bool(value) is expected


def test_write_env_file(tmp_path):
    env_path = post.write_env_file(tmp_path)
    text = env_path.read_text(encoding="utf-8")
    assert re.search(r"^TW_WEBHOOK_SECRETS=whsec_[0-9a-f]{48}$", text, re.MULTILINE)
    assert re.search(r"^# REDIS_URL=redis://localhost:6379/0$", text, re.MULTILINE)
    assert "git-ignored" in text
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    # an existing .env (e.g. when regenerating over a project) is kept
    post.write_env_file(tmp_path)
    assert env_path.read_text(encoding="utf-8") == text


def test_secrets_are_fresh():
    assert len({post.new_webhook_secret() for _ in range(20)}) == 20


def test_make_scripts_executable(tmp_path):
    script = tmp_path / "bin" / "run.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    script.chmod(0o644)
    assert post.make_scripts_executable(tmp_path) == [script]
    assert script.stat().st_mode & stat.S_IXUSR


# --- through cookiecutter itself -----------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "project_slug=My Project!",
        "project_slug=-x",
        "project_slug=import os",
        "project_name=Flask",  # derives package "flask", which the project imports
        "package_name=import",
        "package_name=flask",
        "webhook_path=/healthz",
        "webhook_path=webhooks/tw",
        "author_email=nobody",
    ],
)
def test_bad_answers_fail_with_one_error_line_and_create_nothing(tmp_path, answer):
    result = run_cookiecutter_cli(tmp_path, answer)
    assert result.returncode != 0, result.stdout + result.stderr
    error_lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ERROR: ")]
    assert len(error_lines) == 1, result.stderr
    assert ERROR_LINE.match(error_lines[0]), error_lines[0]
    assert list((tmp_path / "out").iterdir()) == []


def test_injection_through_a_name_fails_and_runs_nothing(tmp_path):
    marker = tmp_path / "PWNED"
    payloads = [
        f"""x'''); open({str(marker)!r}, "w"); ('''""",
        f'''x"""); open({str(marker)!r}, "w"); ("""''',
        f"x\\'); open({str(marker)!r}, 'w'); (\\'",
    ]
    for payload in payloads:
        result = run_cookiecutter_cli(tmp_path, f"project_name={payload}")
        assert result.returncode != 0, payload
        assert not marker.exists(), payload
        assert list((tmp_path / "out").iterdir()) == []


def test_quotes_and_apostrophes_in_names_still_bake(tmp_path):
    name = 'O\'Brien "Tickets" Receiver'
    result = run_cookiecutter_cli(
        tmp_path,
        f"project_name={name}",
        "author_name=Siobhán O'Brien",
        "description=Handles \"orders\" and 'prices' \\ everything.",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    project = tmp_path / "out" / "obrien-tickets-receiver"
    assert project.is_dir(), list((tmp_path / "out").iterdir())
    assert (project / ".env").is_file()
    answers_file = project / ".cookiecutter.json"
    if answers_file.exists():  # written by the template's project files
        answers = json.loads(answers_file.read_text(encoding="utf-8"))
        assert answers["project_name"] == name
        assert answers["package_name"] == "obrien_tickets_receiver"


def test_hook_files_compile_as_plain_python():
    # The unrendered hooks are valid Python too, so tests can import them; cookiecutter
    # renders them before running, which the bakes above exercise.
    root = Path(pre.__file__).parent
    for name in ("pre_gen_project.py", "post_gen_project.py"):
        compile((root / name).read_text(encoding="utf-8"), name, "exec")
