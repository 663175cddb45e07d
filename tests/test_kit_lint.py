"""The kit's own Python (hooks, tests, benchmarks, scripts) passes ruff under `ruff.toml`,
as the generated project passes it under its own settings (`tests/test_bake.py`)."""

import subprocess
import sys

import pytest

from tests.helpers import TEMPLATE_DIR

# Named one by one: ruff must not walk into the template folder, whose pyproject.toml is
# not TOML until cookiecutter renders it.
KIT_CODE = ["hooks", "tests", "benchmarks", "scripts"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_the_kits_own_code_passes_ruff(command):
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache", *KIT_CODE],
        cwd=TEMPLATE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
