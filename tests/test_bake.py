"""Bake a hand-picked list of supported option sets and check each generated project.

Not the full cross product: each option alone where it changes files, plus one set that
moves every other option at once, plus names with quotes. The default bake also runs the
generated project's own test suite (with this environment's packages and
``PYTHONPATH=src``) and builds its wheel; both are marked ``slow``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import TEMPLATE_DIR

# (extra_context, the project directory name it must give)
OPTION_SETS = [
    pytest.param(({}, "tw-webhook-receiver"), id="defaults"),
    pytest.param(
        ({"deploy_target": "none", "github_actions": False}, "tw-webhook-receiver"),
        id="no-deploy-no-actions",
    ),
    pytest.param(({"deploy_target": "systemd"}, "tw-webhook-receiver"), id="systemd"),
    pytest.param(({"deploy_target": "procfile"}, "tw-webhook-receiver"), id="procfile"),
    pytest.param(
        (
            {
                "deploy_target": "all",
                "python_version": "3.13",
                "webhook_path": "/hooks/tickets",
                "project_name": "Acme Tickets Hooks",
            },
            "acme-tickets-hooks",
        ),
        id="all-py313-custom-path-and-name",
    ),
    pytest.param(
        (
            {
                "project_name": 'O\'Brien "Tickets" Receiver',
                "author_name": "Siobh\u00e1n O'Brien",
                "description": "Handles \"orders\" and 'prices' \\ nothing else.",
            },
            "obrien-tickets-receiver",
        ),
        id="quotes-in-names",
    ),
]

SLOW_TIMEOUT = 1500  # the generated suite takes about 10 minutes on 2 shared cores

# Leftover template syntax. Workflows are copied unrendered and use GitHub's own `${{ }}`.
LEFTOVER = re.compile(r"\{\{|\{%|cookiecutter\.(?!json\b)[A-Za-z_]")
LEFTOVER_IN_WORKFLOWS = re.compile(r"(^|[^$])\{\{|\{%|cookiecutter\.(?!json\b)[A-Za-z_]")
# Prometheus' alert templates ({{ $labels.queue }}) and Grafana's legends ({{queue}}).
LEFTOVER_IN_MONITORING = re.compile(
    r"\{\{(?!( \$labels\.\w+ |\w+)\}\})|\{%|cookiecutter\.(?!json\b)[A-Za-z_]"
)

# The console's own Jinja templates are copied unrendered; only cookiecutter's names are left over.
LEFTOVER_IN_CONSOLE_TEMPLATES = re.compile(r"cookiecutter\.(?!json\b)[A-Za-z_]")

DOCKER_FILES = ("Dockerfile", ".dockerignore", "compose.yaml", "compose.sentinel.yaml")
PROCFILE_FILES = ("Procfile",)


@dataclass
class Baked:
    result: object = field(repr=False)
    expected_slug: str = "tw-webhook-receiver"

    @property
    def path(self) -> Path:
        return Path(self.result.project_path)

    @property
    def answers(self) -> dict:
        return self.result.context

    @property
    def slug(self) -> str:
        return self.answers["project_slug"]

    @property
    def package(self) -> str:
        return self.answers["package_name"]


@pytest.fixture(scope="module", params=OPTION_SETS)
def baked(request, cookies_session):
    context, expected_slug = request.param
    result = cookies_session.bake(extra_context=context, template=str(TEMPLATE_DIR))
    assert result.exit_code == 0, result.exception
    return Baked(result, expected_slug)


@pytest.fixture(scope="module")
def default_bake(cookies_session):
    result = cookies_session.bake(template=str(TEMPLATE_DIR))
    assert result.exit_code == 0, result.exception
    return Baked(result)


def text_files(root: Path):
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        try:
            yield path, path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary file


def clean_env(**extra: str) -> dict[str, str]:
    """The parent environment without the receiver's own settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TW_", "PYTEST_")) and k not in ("REDIS_URL", "PYTHONPATH")
    }
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, timeout: int = 120, **kwargs):
    return subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


# --- every option set ----------------------------------------------------------------


def test_bakes_without_error(baked):
    assert baked.result.exception is None, baked.result.exception
    assert baked.result.exit_code == 0
    assert baked.slug == baked.expected_slug
    assert baked.package == baked.expected_slug.replace("-", "_")
    assert baked.path.name == baked.slug


def test_core_files_present(baked):
    root = baked.path
    pkg = root / "src" / baked.package
    for relative in (
        "pyproject.toml",
        "README.md",
        "gunicorn.conf.py",
        ".gitignore",
        ".cookiecutter.json",
        ".env",
    ):
        assert (root / relative).is_file(), relative
    for module in ("__init__.py", "app.py", "signature.py", "cli/__init__.py"):
        assert (pkg / module).is_file(), f"src/{baked.package}/{module}"
    assert (root / "tests").is_dir()
    assert any((root / "samples" / "events").iterdir()), "samples/events is empty"


def test_deploy_files_match_the_target(baked):
    target = baked.answers["deploy_target"]
    root = baked.path
    for name in DOCKER_FILES:
        assert (root / name).is_file() == (target in ("docker", "all")), name
    for name in PROCFILE_FILES:
        assert (root / name).is_file() == (target in ("procfile", "all")), name
    systemd = root / "deploy" / "systemd"
    units = (f"{baked.slug}-web.service", f"{baked.slug}-worker@.service")
    for unit in units:
        assert (systemd / unit).is_file() == (target in ("systemd", "all")), unit
    assert systemd.exists() == (target in ("systemd", "all"))
    # The alert rules and the dashboard ship whatever the deploy target.
    for name in ("deploy/prometheus/alerts.yml", "deploy/grafana/dashboard.json"):
        assert (root / name).is_file(), name


def test_github_actions_present_only_when_asked(baked):
    workflow = baked.path / ".github" / "workflows" / "ci.yml"
    if baked.answers["github_actions"]:
        assert workflow.is_file()
    else:
        assert not (baked.path / ".github").exists()


def test_no_leftover_template_syntax(baked):
    leftovers = []
    for path, text in text_files(baked.path):
        relative = path.relative_to(baked.path)
        in_workflows = relative.parts[:2] == (".github", "workflows")
        in_monitoring = relative.parts[:2] in (
            ("deploy", "prometheus"),
            ("deploy", "grafana"),
        )
        pattern = LEFTOVER_IN_WORKFLOWS if in_workflows else LEFTOVER
        pattern = LEFTOVER_IN_MONITORING if in_monitoring else pattern
        if relative.parts[2:4] == ("console", "templates"):  # copied unrendered: Flask's Jinja
            pattern = LEFTOVER_IN_CONSOLE_TEMPLATES
        for lineno, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                leftovers.append(f"{relative}:{lineno}: {line.strip()}")
    assert not leftovers, "\n".join(leftovers)


def test_pyproject_parses_and_names_the_project(baked):
    data = tomllib.loads((baked.path / "pyproject.toml").read_text(encoding="utf-8"))
    project = data["project"]
    assert project["name"] == baked.slug
    assert project["description"] == baked.answers["description"]
    assert project["requires-python"].replace(" ", "").startswith(">=3.11")
    assert project["scripts"][baked.slug].startswith(baked.package)
    authors = project.get("authors", [])
    assert {
        "name": baked.answers["author_name"],
        "email": baked.answers["author_email"],
    } in authors


def test_cookiecutter_answers_are_recorded(baked):
    recorded = json.loads((baked.path / ".cookiecutter.json").read_text(encoding="utf-8"))
    for key in (
        "project_name",
        "project_slug",
        "package_name",
        "webhook_path",
        "deploy_target",
    ):
        assert recorded[key] == baked.answers[key], key


def test_webhook_path_is_used(baked):
    path = baked.answers["webhook_path"]
    sources = "".join(text for _, text in text_files(baked.path / "src"))
    assert path in sources


def test_python_version_is_used(baked):
    version = baked.answers["python_version"]
    candidates = [
        baked.path / "Dockerfile",
        baked.path / ".github" / "workflows" / "ci.yml",
    ]
    candidates.append(baked.path / ".python-version")
    texts = [p.read_text(encoding="utf-8") for p in candidates if p.is_file()]
    if texts:
        assert any(version in text for text in texts), version


def test_env_file_holds_a_fresh_secret(baked):
    text = (baked.path / ".env").read_text(encoding="utf-8")
    assert re.search(r"^TW_WEBHOOK_SECRETS=whsec_[0-9a-f]{48}$", text, re.MULTILINE)
    assert "# REDIS_URL=redis://localhost:6379/0" in text
    gitignore = (baked.path / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in gitignore


def test_ruff_check_passes(baked):
    proc = run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], baked.path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_check_passes(baked):
    proc = run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."],
        baked.path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_python_files_compile(baked):
    files = sorted(baked.path.rglob("*.py"))
    assert files
    for path in files:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


# --- the default bake only -----------------------------------------------------------


def test_two_bakes_get_different_secrets(default_bake, cookies):
    other = cookies.bake(template=str(TEMPLATE_DIR))
    assert other.exit_code == 0, other.exception

    def secret(root: Path) -> str:
        text = (root / ".env").read_text(encoding="utf-8")
        return re.search(r"^TW_WEBHOOK_SECRETS=(.+)$", text, re.MULTILINE).group(1)

    assert secret(default_bake.path) != secret(Path(other.project_path))


# A partner's handler at its worst: importing it writes a file, and it raises on every event.
BOOM_HANDLER = """\
from pathlib import Path

from . import Event, on

Path({marker!r}).write_text("imported")


@on("*")
def boom(event: Event) -> None:
    Path({marker!r}).write_text("ran")
    raise RuntimeError("boom")
"""


@pytest.mark.slow
def test_generated_test_suite_passes(default_bake, tmp_path):
    """The generated suite passes, with a partner's handler in `handlers/` that raises on
    every event: the project's tests run handlers of their own and never import that
    package's modules (the example test loads the one sample module it is about)."""
    root = default_bake.path
    marker = tmp_path / "boom-touched"
    boom = root / "src" / default_bake.package / "handlers" / "boom.py"
    boom.write_text(BOOM_HANDLER.format(marker=str(marker)), encoding="utf-8")
    try:
        proc = run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            root,
            timeout=SLOW_TIMEOUT,
            env=clean_env(PYTHONPATH=str(root / "src")),
        )
    finally:
        boom.unlink()  # the other tests of this bake see the project as generated
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert not marker.exists(), f"the partner's handler was {marker.read_text()}"


@pytest.mark.slow
def test_wheel_builds_with_package_and_console_script(default_bake, tmp_path):
    proc = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path),
            str(default_bake.path),
        ],
        tmp_path,
        timeout=SLOW_TIMEOUT,
        env=clean_env(),
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    wheels = list(tmp_path.glob("*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        assert f"{default_bake.package}/__init__.py" in names
        assert f"{default_bake.package}/app.py" in names
        assert f"{default_bake.package}/console/templates/base.html" in names
        assert f"{default_bake.package}/cli/__init__.py" in names  # the console script's
        assert f"{default_bake.package}/dev/server.py" in names
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        text = wheel.read(entry_points).decode()
    assert re.search(
        rf"^\[console_scripts\]$[\s\S]*^{re.escape(default_bake.slug)}\s*=\s*{default_bake.package}",
        text,
        re.MULTILINE,
    ), text
