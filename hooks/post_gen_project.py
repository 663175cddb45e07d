"""Trim the generated project to the chosen options and write its local ``.env``.

Cookiecutter renders this file with Jinja and runs it with its own interpreter, inside
the generated project's directory, so it uses the standard library only and calls no
outside tool (no git, no docker). The answers are read in ``main()`` through JSON; the
functions above it take plain arguments so the template's tests can import them.

``cruft update`` and ``cruft diff`` render the template again, twice for an update, into
throwaway directories, and run this hook each time. There it only trims: it writes no
``.env`` (the project keeps its own, which the project's ``[tool.cruft] skip`` keeps out
of every update and diff) and prints nothing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

# What each deploy target keeps; every other target's files are removed.
DEPLOY_FILES: dict[str, tuple[str, ...]] = {
    "docker": ("Dockerfile", ".dockerignore", "compose.yaml", "compose.sentinel.yaml"),
    "systemd": ("deploy/systemd",),
    "procfile": ("Procfile",),
}
DEPLOY_TARGETS = (*DEPLOY_FILES, "all", "none")

ENV_TEMPLATE = """\
# Settings for local runs only (the dev server, the worker, the replay command).
# This file is git-ignored: never commit it. In production, set these variables in
# the environment of the web and worker processes instead.
# Comma-separated; any one may match, so a rotation can list the old and the new secret.
TW_WEBHOOK_SECRETS={secret}
# Leave unset to let the dev command start an embedded Redis.
# REDIS_URL=redis://localhost:6379/0
"""


def remove_path(path: Path) -> None:
    """Remove a file or a directory tree; a path that is absent is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_empty_dir(path: Path) -> None:
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()


def deploy_paths_to_remove(deploy_target: str) -> list[str]:
    if deploy_target not in DEPLOY_TARGETS:
        raise ValueError(f"unknown deploy_target {deploy_target!r}")
    if deploy_target == "all":
        return []
    return [
        path for target, paths in DEPLOY_FILES.items() if target != deploy_target for path in paths
    ]


def remove_deploy_files(project_dir: Path, deploy_target: str) -> None:
    for relative in deploy_paths_to_remove(deploy_target):
        remove_path(project_dir / relative)
    remove_empty_dir(project_dir / "deploy")


def remove_github_actions(project_dir: Path) -> None:
    remove_path(project_dir / ".github")


def new_webhook_secret() -> str:
    return f"whsec_{secrets.token_hex(24)}"


def write_env_file(project_dir: Path) -> Path:
    """Write ``.env`` with a fresh secret; an existing ``.env`` is kept as it is.

    The file is created with mode 600, so the secret is never readable by others, not
    even for a moment.
    """
    env_path = project_dir / ".env"
    try:
        fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return env_path
    with os.fdopen(fd, "w", encoding="utf-8") as env_file:
        env_file.write(ENV_TEMPLATE.format(secret=new_webhook_secret()))
    env_path.chmod(0o600)  # whatever the umask
    return env_path


# The name `tempfile.mkdtemp()` gives, which cruft's throwaway directories have.
THROWAWAY_DIR_RE = re.compile(r"^tmp[a-z0-9_]{8}$")


def is_cruft_rerender(project_dir: Path, cruft_commit: str) -> bool:
    """Whether cruft is rendering the template again for ``update`` or ``diff``.

    Cruft offers no flag for it (its issue #143), so this reads the signs it leaves: it
    sets ``_commit`` in the context, and renders into a fresh temporary directory that
    holds nothing but the project. ``cruft create`` and cookiecutter render where the
    user asked, which is never such a directory in practice.
    """
    parent = project_dir.resolve().parent
    return (
        bool(cruft_commit)
        and parent.parent == Path(tempfile.gettempdir()).resolve()
        and THROWAWAY_DIR_RE.match(parent.name) is not None
        and [p.name for p in parent.iterdir()] == [project_dir.name]
    )


def make_scripts_executable(project_dir: Path) -> list[Path]:
    scripts = sorted(p for p in project_dir.rglob("*.sh") if p.is_file())
    for script in scripts:
        mode = script.stat().st_mode
        script.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return scripts


def as_bool(value: object) -> bool:
    """A real boolean, also from answers given as text ("no", "false", "0", ...)."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "y", "yes", "true", "on"}
    return bool(value)


def main() -> None:
    # Triple single quotes on purpose: the rendered JSON starts and ends with '"'.
    # fmt: off
    deploy_target = json.loads(r'''{{ cookiecutter.deploy_target | tojson }}''')
    github_actions = json.loads(r'''{{ cookiecutter.github_actions | tojson }}''')
    slug = json.loads(r'''{{ cookiecutter.project_slug | tojson }}''')
    cruft_commit = json.loads(r'''{{ cookiecutter._commit | default("") | tojson }}''')
    # fmt: on
    project_dir = Path.cwd()
    remove_deploy_files(project_dir, deploy_target)
    if not as_bool(github_actions):
        remove_github_actions(project_dir)
    make_scripts_executable(project_dir)
    if is_cruft_rerender(project_dir, cruft_commit):
        return
    write_env_file(project_dir)
    print(
        f"Created {slug}/ with a fresh webhook secret in {slug}/.env (git-ignored).\n"
        f"Next: cd {slug} && python -m venv .venv && . .venv/bin/activate\n"
        f"      python -m pip install -e '.[dev]' && {slug} dev"
    )


if __name__ == "__main__":
    main()
