"""The hooks: validators and post-generation helpers as units, then through real bakes."""

from __future__ import annotations

import json
import re
import shutil
import stat
import tempfile
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


@pytest.mark.parametrize("name", ["!!!", "--", "\U0001f39f\ufe0f"])
def test_project_name_needs_a_letter_or_digit(name):
    error = pre.check_project_name(name)
    assert error and error.startswith("project_name "), error
    suggestion = re.search(r"\(try: (.+)\)$", error).group(1)
    assert pre.check_project_name(suggestion) is None


@pytest.mark.parametrize("name", ["Café Hooks", "東京 Hooks", "2024 Hooks", "O'Brien"])
def test_project_names_with_a_letter_or_digit_are_fine(name):
    assert pre.check_project_name(name) is None


def test_choices_are_those_of_cookiecutter_json(template_dir):
    options = json.loads((template_dir / "cookiecutter.json").read_text(encoding="utf-8"))
    assert {key: tuple(options[key]) for key in pre.CHOICES} == pre.CHOICES
    assert set(post.DEPLOY_TARGETS) == set(options["deploy_target"])


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [
        ("deploy_target", "all", True),
        ("deploy_target", "kubernetes", False),
        ("deploy_target", "Docker", False),
        ("python_version", "3.13", True),
        ("python_version", "3.10", False),
        ("python_version", 3.12, False),
    ],
)
def test_check_choice(key, value, ok):
    error = pre.check_choice(key, value)
    assert (error is None) is ok, error
    if not ok:
        suggestion = re.search(r"\(try: (.+)\)$", error).group(1)
        assert pre.check_choice(key, suggestion) is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        *[(True, True), (False, True), ("yes", True), ("No", True), ("off", True)],
        *[("maybe", False), ("", False), (2, False), (None, False)],
    ],
)
def test_check_bool(value, ok):
    assert (pre.check_bool("github_actions", value) is None) is ok


def test_free_text_must_be_one_nonempty_line():
    assert pre.check_text("project_name", 'O\'Brien "Tickets" Receiver') is None
    assert pre.check_text("project_name", "  ") is not None
    assert pre.check_text("description", "two\nlines") is not None


# A full set of good answers, as the hooks receive them.
GOOD_ANSWERS = {
    "project_name": "TW Webhook Receiver",
    "project_slug": "tw-webhook-receiver",
    "package_name": "tw_webhook_receiver",
    "description": "Receives webhooks.",
    "author_name": "Your Name",
    "author_email": "you@example.com",
    "webhook_path": "/webhooks/tw",
    "python_version": "3.12",
    "deploy_target": "docker",
    "github_actions": True,
}


def test_validate_reports_the_first_problem_only():
    answers = GOOD_ANSWERS
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


def test_cruft_rerender_is_told_from_a_generation(tmp_path):
    throwaway = Path(tempfile.mkdtemp())  # where cruft update and diff render
    try:
        project = throwaway / "tw-webhook-receiver"
        project.mkdir()
        assert post.is_cruft_rerender(project, "0123abc")
        assert not post.is_cruft_rerender(project, "")  # cookiecutter sets no _commit
        (throwaway / "other").mkdir()
        assert not post.is_cruft_rerender(project, "0123abc")
    finally:
        shutil.rmtree(throwaway)
    # cruft create and cookiecutter render where the user asked
    (tmp_path / "tw-webhook-receiver").mkdir()
    assert not post.is_cruft_rerender(tmp_path / "tw-webhook-receiver", "0123abc")


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
        # Each derives an empty directory name unless the template guards against it;
        # cookiecutter would then stop on "directory already exists" before any hook.
        "project_name=",
        "project_name=!!!",
    ],
)
def test_bad_answers_fail_with_one_error_line_and_create_nothing(tmp_path, answer):
    result = run_cookiecutter_cli(tmp_path, answer)
    assert result.returncode != 0, result.stdout + result.stderr
    error_lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ERROR: ")]
    assert len(error_lines) == 1, result.stderr
    assert ERROR_LINE.match(error_lines[0]), error_lines[0]
    assert list((tmp_path / "out").iterdir()) == []


def test_a_bad_choice_in_a_replay_file_fails_with_one_error_line(tmp_path):
    """A replay file (like a user config or an edited .cruft.json) skips cookiecutter's
    own check of choices: the hook is what stops it, before any file is written."""
    answers = {
        **GOOD_ANSWERS,
        "deploy_target": "kubernetes",
        "_copy_without_render": [".github/workflows/*"],
    }
    replay = tmp_path / "replay.json"
    replay.write_text(json.dumps({"cookiecutter": answers}), encoding="utf-8")
    result = run_cookiecutter_cli(tmp_path, f"--replay-file={replay}", no_input=False)
    assert result.returncode != 0
    error_lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ERROR: ")]
    assert error_lines == [
        (
            "ERROR: deploy_target 'kubernetes' is not one of docker, systemd, procfile, "
            "all, none (try: docker)"
        )
    ], result.stderr
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("answer", "choices"),
    [
        (
            "deploy_target=kubernetes",
            "['docker', 'systemd', 'procfile', 'all', 'none']",
        ),
        ("python_version=3.10", "['3.12', '3.13', '3.11']"),
    ],
)
def test_a_bad_choice_on_the_command_line_ends_with_the_choices(tmp_path, answer, choices):
    """What the template README says of cookiecutter's own check, which runs before any
    hook: a traceback whose last line names the value and the choices."""
    result = run_cookiecutter_cli(tmp_path, answer)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ValueError: {answer.split('=')[1]} provided for choice")
    assert last.endswith(f"the choices are {choices}."), last
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Café Hooks", "cafe-hooks"),
        ("Siobhán's Straße Tickets", "siobhans-strasse-tickets"),
    ],
)
def test_non_ascii_names_are_transliterated(tmp_path, name, slug):
    result = run_cookiecutter_cli(tmp_path, f"project_name={name}")
    assert result.returncode == 0, result.stdout + result.stderr
    project = tmp_path / "out" / slug
    assert (project / "src" / slug.replace("-", "_") / "app.py").is_file()
    answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert answers["project_name"] == name


def test_python_version_is_the_project_python_and_the_readme_says_so(tmp_path, template_dir):
    """`.python-version` is read by pyenv and uv for the local venv too, not by Docker and
    CI alone: the option's row in the README must say so."""
    result = run_cookiecutter_cli(tmp_path, "python_version=3.13")
    assert result.returncode == 0, result.stderr
    project = tmp_path / "out" / "tw-webhook-receiver"
    assert (project / ".python-version").read_text(encoding="utf-8").strip() == "3.13"
    readme = (template_dir / "README.md").read_text(encoding="utf-8")
    [row] = [line for line in readme.splitlines() if line.startswith("| `python_version`")]
    assert "`.python-version`" in row and "pyenv" in row, row


def test_injection_through_a_name_runs_nothing(tmp_path):
    """The payload reaches both hooks' source as an answer; it is only text there (and the
    slug derived from it is cleaned), so the project is made and the payload never runs."""
    marker = tmp_path / "PWNED"
    payloads = [
        f"""x'''); open({str(marker)!r}, "w"); ('''""",
        f'''x"""); open({str(marker)!r}, "w"); ("""''',
        f"x\\'); open({str(marker)!r}, 'w'); (\\'",
    ]
    for number, payload in enumerate(payloads):
        run_dir = tmp_path / f"run{number}"
        run_dir.mkdir()
        named = run_cookiecutter_cli(run_dir, f"project_name={payload}")
        assert named.returncode == 0, named.stdout + named.stderr
        [project] = (run_dir / "out").iterdir()
        assert (project / ".env").is_file()  # both hooks ran
        answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
        assert answers["project_name"] == payload
        assert not marker.exists(), payload


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
