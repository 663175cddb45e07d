"""Upgrading a generated project with cruft, as a partner would.

A throwaway git copy of this template gets two commits: an "older" one (today's tree with
one small change in a generated file) and HEAD (today's tree). A project is created with
`cruft create` at the older commit, put under git, a handler is edited, and `cruft update`
brings it to HEAD. The result must be clean: the template's change applied, the handler
edit kept, no `.rej` file, and `.env` (the project's own secret) untouched, mode 600, and
never shown by `cruft diff`. Nothing here reads this repository's own history or the
network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TEMPLATE_DIR

CRUFT = Path(sys.executable).with_name("cruft")
OLD_LINE = "# A line that only the older template had.\n"
HANDLER_EDIT = '''

@on("order.cancelled")
def note_cancellation(event: Event) -> None:
    """Added by the partner after generating the project."""
'''
NEXT_STEPS = "with a fresh webhook secret"  # the post-generation hook's message
COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "*.egg-info",
)

pytestmark = pytest.mark.skipif(
    not CRUFT.exists() or shutil.which("git") is None,
    reason="cruft (requirements.txt) and git are needed",
)


def isolated_env(home: Path) -> dict[str, str]:
    """No user or system git and cookiecutter config; a fixed git identity."""
    home.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "TW_", "PYTEST_")) and k != "REDIS_URL"
    }
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Template Test",
        GIT_AUTHOR_EMAIL="template-test@example.com",
        GIT_COMMITTER_NAME="Template Test",
        GIT_COMMITTER_EMAIL="template-test@example.com",
    )
    return env


def run(cmd: list, cwd: Path, env: dict, timeout: int = 180):
    return subprocess.run(
        [str(part) for part in cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def git(cwd: Path, env: dict, *args: str) -> str:
    proc = run(["git", *args], cwd, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def commit_all(repo: Path, env: dict, message: str) -> str:
    git(repo, env, "add", "-A")
    git(repo, env, "commit", "-q", "-m", message)
    return git(repo, env, "rev-parse", "HEAD")


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return isolated_env(tmp_path / "home")


@pytest.fixture
def template_repo(tmp_path, env) -> tuple[Path, str, str]:
    """(repo, older commit, HEAD commit) of a git copy of this template."""
    repo = tmp_path / "template"
    shutil.copytree(TEMPLATE_DIR, repo, ignore=COPY_IGNORE)
    gunicorn_conf = repo / "{{cookiecutter.project_slug}}" / "gunicorn.conf.py"
    current = gunicorn_conf.read_text(encoding="utf-8")
    git(repo, env, "init", "-q", "-b", "main")
    gunicorn_conf.write_text(current + OLD_LINE, encoding="utf-8")
    older = commit_all(repo, env, "older template")
    gunicorn_conf.write_text(current, encoding="utf-8")
    head = commit_all(repo, env, "newer template")
    return repo, older, head


def env_secret(project: Path) -> str:
    text = (project / ".env").read_text(encoding="utf-8")
    return re.search(r"^TW_WEBHOOK_SECRETS=(whsec_\w+)$", text, re.MULTILINE).group(1)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_cruft_create_then_update_keeps_the_project_and_its_secret(tmp_path, env, template_repo):
    repo, older, head = template_repo
    out = tmp_path / "projects"
    out.mkdir()
    created = run(
        [CRUFT, "create", repo, "--checkout", older, "--no-input", "--output-dir", out],
        tmp_path,
        env,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    assert created.stdout.count(NEXT_STEPS) == 1, created.stdout
    project = out / "tw-webhook-receiver"
    assert json.loads((project / ".cruft.json").read_text())["commit"] == older
    assert (project / "gunicorn.conf.py").read_text().endswith(OLD_LINE)
    assert mode(project / ".env") == 0o600
    secret, env_bytes = env_secret(project), (project / ".env").read_bytes()

    git(project, env, "init", "-q", "-b", "main")
    commit_all(project, env, "generated")
    orders = next((project / "src").glob("*/handlers/orders.py"))
    with orders.open("a", encoding="utf-8") as handler:
        handler.write(HANDLER_EDIT)
    commit_all(project, env, "a handler of our own")

    updated = run([CRUFT, "update", "--skip-apply-ask"], project, env)
    output = updated.stdout + updated.stderr
    assert updated.returncode == 0, output
    assert "Good work!" in output, output
    assert NEXT_STEPS not in output  # the hook is quiet while cruft re-renders
    for problem in ("does not exist in index", "conflict", ".rej", "Failed"):
        assert problem not in output, output

    assert not list(project.rglob("*.rej"))
    assert (project / ".env").read_bytes() == env_bytes
    assert mode(project / ".env") == 0o600
    assert orders.read_text(encoding="utf-8").endswith(HANDLER_EDIT)
    assert not (project / "gunicorn.conf.py").read_text().endswith(OLD_LINE)
    assert json.loads((project / ".cruft.json").read_text())["commit"] == head
    status = run(["git", "status", "--porcelain"], project, env).stdout.splitlines()
    assert sorted(line[3:] for line in status) == [".cruft.json", "gunicorn.conf.py"]

    checked = run([CRUFT, "check"], project, env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    diffed = run([CRUFT, "diff"], project, env)
    assert diffed.returncode == 0, diffed.stderr
    assert "note_cancellation" in diffed.stdout  # the diff is real: it shows the edit
    assert secret not in diffed.stdout + diffed.stderr
    assert ".env" not in diffed.stdout.replace(".env.example", "")

    tests = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_config.py",
            "tests/test_example_handler.py",
        ],
        project,
        env | {"PYTHONPATH": str(project / "src")},
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_cookiecutter_json_records_the_answers_only(tmp_path, env, template_repo):
    """`.cookiecutter.json` holds the answers and nothing of the machine that generated
    the project, so `cruft link` can take it as is and a later render matches it."""
    repo, _, head = template_repo
    out = tmp_path / "projects"
    out.mkdir()
    baked = run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "-o", out, repo],
        tmp_path,
        env,
    )
    assert baked.returncode == 0, baked.stderr
    project = out / "tw-webhook-receiver"
    answers = json.loads((project / ".cookiecutter.json").read_text())
    options = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())
    asked = {key for key in options if not key.startswith("_")}
    assert set(answers) == asked
    assert str(tmp_path) not in (project / ".cookiecutter.json").read_text()

    linked = run(
        [
            CRUFT,
            "link",
            repo,
            "--no-input",
            "--checkout",
            head,
            "--extra-context",
            json.dumps(answers),
        ],
        project,
        env,
    )
    assert linked.returncode == 0, linked.stdout + linked.stderr
    git(project, env, "init", "-q", "-b", "main")
    commit_all(project, env, "generated with cookiecutter, linked with cruft")
    diffed = run([CRUFT, "diff", "--exit-code"], project, env)
    assert diffed.returncode == 0, diffed.stdout + diffed.stderr
    assert diffed.stdout.strip() == ""
