"""Every deploy file at once: bake `deploy_target=all` and run the generated project's
deploy-file tests there, since the default bake (checked in test_bake.py) has only the
Docker files and its suite skips the Procfile and systemd tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import TEMPLATE_DIR
from tests.test_bake import SLOW_TIMEOUT, clean_env, run


@pytest.mark.slow
def test_deploy_file_tests_pass_with_every_target(cookies):
    result = cookies.bake(extra_context={"deploy_target": "all"}, template=str(TEMPLATE_DIR))
    assert result.exit_code == 0, result.exception
    root = Path(result.project_path)
    for name in ("Dockerfile", "compose.yaml", "Procfile", "deploy/systemd"):
        assert (root / name).exists(), name
    proc = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         "tests/test_deploy_files.py"],
        root,
        timeout=SLOW_TIMEOUT,
        env=clean_env(PYTHONPATH=str(root / "src")),
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    # Only a missing tool (make, systemd-analyze) may skip a test; never a missing file.
    assert "was not generated" not in proc.stdout, proc.stdout
