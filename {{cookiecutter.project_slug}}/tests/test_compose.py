"""compose.yaml for real: build the image, bring Redis, the web tier and a worker up, send
the signed samples to the published port, and check that each was handled once, that
Redis kept what it acknowledged across `compose restart redis`, and that nothing runs as
root. And compose.sentinel.yaml beside it: a Redis failover loses and doubles nothing.

It needs a running Docker engine and compose (`docker compose`, or the older
`docker-compose`); without them it is skipped with a line saying so, and fails under
REQUIRE_TEST_TOOLS=1. The worker runs the tests' recording handlers (mounted in by an
override file), never the project's own `handlers` package. The image gets a tag of its
own, removed afterwards, so a local `{{ cookiecutter.project_slug }}:latest` is left alone.
"""

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from external_tools import require
from processes import PROJECT_ROOT, wait_for
from recording_handlers import RUNS_KEY, expected_runs

from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.replay import read_events

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (PROJECT_ROOT / "compose.yaml").exists(), reason="compose.yaml was not generated"
    ),
]

PACKAGE = "{{ cookiecutter.package_name }}"
SAMPLES = PROJECT_ROOT / "samples" / "events"
PATH = "{{ cookiecutter.webhook_path }}"
BUILD_TIMEOUT = 900  # a first build installs the project's dependencies into the image

OVERRIDE = """\
services:
  web:
    image: {image}
  worker:
    image: {image}
    environment:
      TW_HANDLERS_PACKAGE: ""
      TW_HANDLER_MODULES: recording_handlers
      PYTHONPATH: /test-handlers
      TEST_RECORD_REDIS_URL: redis://{record}:6379/0
    volumes:
      - {handlers}:/test-handlers/recording_handlers.py:ro
"""
# With compose.sentinel.yaml the handlers' record lives apart from the Redis that fails
# over, as a partner's database would.
RECORD_SERVICE = """\
  record:
    image: redis:7-alpine
    command: ["redis-server", "--appendonly", "yes"]
"""


def compose_command() -> list[str]:
    """`docker compose` where the plugin is installed, else the standalone `docker-compose`."""
    docker = require("docker")
    if subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return [require("docker-compose")]


def require_engine(docker: str) -> None:
    info = subprocess.run([docker, "info"], capture_output=True, text=True)
    if info.returncode != 0:
        message = f"no Docker engine answers `docker info`: {info.stderr.strip()[-200:]}"
        if os.environ.get("REQUIRE_TEST_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def stand_in_images(docker: str) -> list[str]:
    """Base images made by `docker import` rather than pulled: a machine without a registry
    builds look-alikes of python:*-slim and redis:7-alpine that way."""
    found = []
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    bases = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")}
    for image in sorted(bases - {"build"} | {"redis:7-alpine"}):
        inspected = subprocess.run(
            [docker, "image", "inspect", image], capture_output=True, text=True
        )
        comment = json.loads(inspected.stdout)[0].get("Comment", "") if inspected.stdout else ""
        if inspected.returncode == 0 and comment.startswith("Imported"):
            found.append(image)
    return found


class Stack:
    """One compose project of this test's own: its name, port, secret and commands."""

    def __init__(self, tmp_path: Path, *extra_files: str):
        self.compose = compose_command()
        self.name = f"twcompose{os.getpid()}"
        self.image = f"{self.name}-app:test"
        self.port = free_port()
        self.secret = "whsec_" + secrets.token_hex(24)
        override = tmp_path / "compose.test.yaml"
        handlers = PROJECT_ROOT / "tests" / "recording_handlers.py"
        self.record = "record" if extra_files else "redis"
        text = OVERRIDE.format(image=self.image, handlers=handlers, record=self.record)
        override.write_text(text + (RECORD_SERVICE if extra_files else ""), encoding="utf-8")
        files = [PROJECT_ROOT / "compose.yaml", *(PROJECT_ROOT / f for f in extra_files), override]
        self.files = [arg for path in files for arg in ("-f", str(path))]
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TW_")},
            "COMPOSE_PROJECT_NAME": self.name,
            "TW_WEBHOOK_SECRETS": self.secret,
            "WEB_PORT": f"127.0.0.1:{self.port}",
        }

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.compose, *self.files, *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def check(self, *args: str, timeout: float = 120) -> str:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def runs(self) -> dict[str, int]:
        """The recording handlers' counts, read inside their Redis' container (not published)."""
        out = self.check("exec", "-T", self.record, "redis-cli", "--raw", "HGETALL", RUNS_KEY)
        lines = out.split()
        return {key: int(value) for key, value in zip(lines[::2], lines[1::2], strict=True)}

    def replay(self, events: Path = SAMPLES) -> str:
        command = [sys.executable, "-m", PACKAGE, "replay", "--secret", self.secret]
        result = subprocess.run(
            [*command, "--max-attempts", "20", "--url", self.url + PATH, events],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def stack(request, tmp_path, capsys):
    docker = require("docker")
    require_engine(docker)
    made = Stack(tmp_path, *getattr(request, "param", ()))
    imported = stand_in_images(docker)
    if imported:
        with capsys.disabled():
            print(f"\n[test_compose] base images are local stand-ins: {', '.join(imported)}")
    try:
        yield made
    finally:
        made.run("down", "-v", "--remove-orphans", timeout=180)
        subprocess.run([docker, "image", "rm", "-f", made.image], capture_output=True)


def up_with_the_samples_handled(stack: Stack) -> list[dict]:
    """Build and start the stack, send the samples once, wait until each was handled."""
    samples = [d.envelope for d in read_events([str(SAMPLES)])]
    stack.check("up", "--build", "-d", timeout=BUILD_TIMEOUT)
    wait_for(lambda: healthy(stack.url), timeout=120)
    first = stack.replay()
    assert first.count(" accepted ") == len(samples), first
    wait_for(lambda: stack.runs() == expected_runs(samples), timeout=120)
    return samples


def test_compose_up_handles_the_samples_and_keeps_them_across_a_redis_restart(stack):
    samples = up_with_the_samples_handled(stack)

    # Appendonly with fsync always: what Redis acknowledged is still there after a restart,
    # so the dedupe marks answer the same events as duplicates and no handler runs again.
    stack.check("restart", "redis", timeout=120)
    ping = ("exec", "-T", "redis", "redis-cli", "ping")
    wait_for(lambda: stack.run(*ping).stdout.strip() == "PONG", timeout=60)
    assert stack.runs() == expected_runs(samples)
    wait_for(lambda: healthy(stack.url), timeout=60)
    again = stack.replay()
    assert again.count(" duplicate ") == len(samples), again
    time.sleep(2)  # a wrongly queued second run would have had time to show
    assert stack.runs() == expected_runs(samples)

    for service in ("web", "worker"):
        uid = stack.check("exec", "-T", service, "id", "-u").strip()
        assert uid != "0", f"{service} runs as root"


def ask_sentinel(stack: Stack, *words: str) -> list[str]:
    """The first Sentinel's answer to `SENTINEL WORDS...`, one item a line."""
    command = ("exec", "-T", "sentinel-1", "redis-cli", "-p", "26379", "--raw", "sentinel")
    return stack.run(*command, *words).stdout.split()


def sentinel_says(stack: Stack) -> str:
    """The primary's address as the first Sentinel names it."""
    return " ".join(ask_sentinel(stack, "get-master-addr-by-name", "tw-master"))


def ready_to_fail_over(stack: Stack) -> bool:
    """The Sentinels can promote the replica: they know it, it is in sync, and this one
    has found its peers (a primary killed before that is simply down, with no failover)."""
    replica = ask_sentinel(stack, "replicas", "tw-master")
    peers = ask_sentinel(stack, "sentinels", "tw-master")
    linked = "master-link-status" in replica
    in_sync = linked and replica[replica.index("master-link-status") + 1] == "ok"
    return in_sync and peers.count("name") >= 2


@pytest.mark.parametrize("stack", [("compose.sentinel.yaml",)], indirect=True)
def test_compose_sentinel_fails_over_without_losing_or_doubling_an_event(stack, tmp_path):
    """compose.sentinel.yaml for real: the primary is killed after the samples were
    acknowledged (each one confirmed by the replica), the Sentinels promote the replica,
    the old primary comes back as its replica; then every sample is still a duplicate,
    new events are handled, and no handler ran twice."""
    samples = up_with_the_samples_handled(stack)

    primary = sentinel_says(stack)
    wait_for(lambda: ready_to_fail_over(stack), timeout=60)
    stack.check("kill", "redis")
    wait_for(lambda: sentinel_says(stack) not in ("", primary), timeout=90)
    # One replica: writes wait (503, workers hold) until the old primary rejoins.
    stack.check("start", "redis")

    later = [{**event, "id": event["id"] + "_after"} for event in samples]
    folder = tmp_path / "later"
    folder.mkdir()
    for number, event in enumerate(later):
        (folder / f"{number}.json").write_text(json.dumps(event), encoding="utf-8")
    second = stack.replay(folder)
    assert second.count(" accepted ") == len(later), second
    again = stack.replay()
    assert again.count(" duplicate ") == len(samples), again
    wait_for(lambda: stack.runs() == expected_runs(samples + later), timeout=120)
    time.sleep(2)  # a wrongly queued second run would have had time to show
    assert stack.runs() == expected_runs(samples + later)
