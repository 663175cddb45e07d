"""Format the template's Python files with ruff, through a default bake.

The template's files hold Jinja (`from {{ cookiecutter.package_name }} import ...`), which
ruff cannot parse. This bakes the defaults, runs `ruff format` and `ruff check --fix` on
the bake, and writes each formatted file back with the default values turned into their
Jinja expressions again. Run it from the repository root: `python scripts/format_template.py`.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "{{cookiecutter.project_slug}}"
DEFAULTS = json.loads((ROOT / "cookiecutter.json").read_text())
# Longest first, so that the slug is not mistaken for part of another value.
REVERSE = [
    ("{{ cookiecutter.package_name }}", "tw_webhook_receiver"),
    ("{{ cookiecutter.project_slug }}", "tw-webhook-receiver"),
    ("{{ cookiecutter.project_name }}", DEFAULTS["project_name"]),
    ("{{ cookiecutter.description }}", DEFAULTS["description"]),
    ("{{ cookiecutter.webhook_path }}", DEFAULTS["webhook_path"]),
]


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        project = Path(cookiecutter(str(ROOT), no_input=True, output_dir=out))
        ruff = [sys.executable, "-m", "ruff"]
        subprocess.run([*ruff, "check", "--fix", "--quiet", str(project)], check=False)
        subprocess.run([*ruff, "format", "--quiet", str(project)], check=True)
        changed = 0
        for baked in project.rglob("*.py"):
            relative = baked.relative_to(project)
            source = TEMPLATE / str(relative).replace(
                "tw_webhook_receiver", "{{cookiecutter.package_name}}"
            )
            if not source.exists():
                continue
            text = baked.read_text()
            original = source.read_text()
            for jinja, value in REVERSE:
                if jinja in original:
                    text = text.replace(value, jinja)
            if text != original:
                source.write_text(text)
                changed += 1
                print(f"formatted {source.relative_to(ROOT)}")
        print(f"{changed} file(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
