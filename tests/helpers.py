"""Helpers shared by the template's tests (plain functions, imported explicitly)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parents[1]


def run_cookiecutter_cli(
    tmp_path: Path, *answers: str, cwd: Path | None = None, no_input: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``cookiecutter --no-input`` as a user would, isolated from the user's config.

    ``answers`` are ``key=value`` strings (or options); the output goes to
    ``tmp_path / "out"``.
    """
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    config = tmp_path / "cookiecutter-config.yaml"
    config.write_text(
        f'cookiecutters_dir: "{home / "cookiecutters"}"\nreplay_dir: "{home / "replay"}"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            *(["--no-input"] if no_input else []),
            "--config-file",
            str(config),
            "--output-dir",
            str(out),
            str(TEMPLATE_DIR),
            *answers,
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd or tmp_path,
        env=env,
        timeout=120,
    )
