"""The deploy files: they parse, and the commands they run start and serve from this project.

Docker, compose and systemd themselves cannot be assumed on a test machine, so no image is
built and no unit is started here. What is checked instead: every file parses; the paths
it copies exist; each names the same web and worker commands; and those commands (gunicorn,
the worker, the health checks) are started from this project with a private Redis and must
serve. Tests for a deploy target not chosen when the project was generated are skipped.
"""

import configparser
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from itertools import pairwise
from pathlib import Path

import pytest
import yaml
from processes import PROJECT_ROOT, project_env, running, stop, wait_for, wait_until_up
from recording_handlers import runs

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.testing import make_event, signed_headers

PACKAGE = "{{ cookiecutter.package_name }}"
SLUG = "{{ cookiecutter.project_slug }}"
WEB = ["gunicorn", "-c", "gunicorn.conf.py", f"{PACKAGE}.app:create_app()"]
WORKER = [SLUG, "worker"]
WEBHOOK_PATH = "{{ cookiecutter.webhook_path }}"

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
COMPOSE = PROJECT_ROOT / "compose.yaml"
PROCFILE = PROJECT_ROOT / "Procfile"
SYSTEMD = PROJECT_ROOT / "deploy" / "systemd"
WEB_UNIT = SYSTEMD / f"{SLUG}-web.service"
WORKER_UNIT = SYSTEMD / f"{SLUG}-worker@.service"
WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"


def needs(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path.name} was not generated")


def local(argv: list[str]) -> list[str]:
    """The command as it runs here: an installed script becomes `python -m` of the same."""
    program = Path(argv[0]).name
    if program == "gunicorn":
        return [sys.executable, "-m", "gunicorn", *argv[1:]]
    if program == SLUG:
        return [sys.executable, "-m", PACKAGE, *argv[1:]]
    if program in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    raise AssertionError(f"unexpected program {argv[0]!r} in {argv}")


def post_event(base: str) -> dict:
    event = make_event("order.created")
    body = json.dumps(event).encode()
    request = urllib.request.Request(
        base + WEBHOOK_PATH, data=body, headers=signed_headers(body), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 202
    return event


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        keyword, _, rest = current.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def dockerfile_exec_form(keyword: str) -> list[str]:
    [args] = [rest for kw, rest in dockerfile_instructions() if kw == keyword]
    if keyword == "HEALTHCHECK":
        args = args[args.index("CMD ") + 4 :]
    return json.loads(args)  # exec form: a JSON array, no shell in between


def dockerfile_env() -> dict[str, str]:
    return dict(
        pair.split("=", 1)
        for kw, rest in dockerfile_instructions()
        if kw == "ENV"
        for pair in shlex.split(rest)
    )


def dockerfile_run_examples() -> dict[str, list[str]]:
    """The `docker run` lines of the Dockerfile's opening comment, by the command they run."""
    examples = {}
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("#") and "docker run " in line:
            argv = shlex.split(line.lstrip("# "))
            examples["worker" if argv[-1] == "worker" else "web"] = argv
    return examples


def unit_environment(path: Path) -> dict[str, str]:
    """Every `Environment=` assignment of a unit (configparser keeps only the last line)."""
    return dict(
        pair.split("=", 1)
        for line in path.read_text().splitlines()
        if line.startswith("Environment=")
        for pair in shlex.split(line.removeprefix("Environment="))
    )


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def procfile() -> dict[str, list[str]]:
    entries = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = shlex.split(command)
    return entries


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def exec_start(path: Path) -> list[str]:
    return shlex.split(unit(path)["Service"]["ExecStart"])


# --- the two commands every target runs -----------------------------------------------


@pytest.fixture
def web(redis_url, tmp_path):
    """The web command (WEB), as a deploy file starts it: PORT set, the project as cwd."""
    port = free_port()
    env = project_env(redis_url, PORT=str(port))
    log = tmp_path / "web.log"
    with running(local(WEB), env, log) as process:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/healthz", process, log)
        yield base, process, env


def test_console_script_is_the_package_cli():
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"][SLUG] == f"{PACKAGE}.cli:main"
    assert (PROJECT_ROOT / "gunicorn.conf.py").is_file()


def test_web_command_binds_port_and_accepts_events(web):
    base, _, _ = web
    post_event(base)


def test_worker_command_runs_the_handlers(web, redis_conn, tmp_path):
    base, _, env = web
    env = env | {"TW_HANDLER_MODULES": "recording_handlers"}
    with running(local(WORKER), env, tmp_path / "worker.log"):
        event = post_event(base)
        wait_for(lambda: runs(redis_conn).get(f"all:{event['id']}") == 1, timeout=20)


# --- Dockerfile, .dockerignore, compose.yaml -------------------------------------------


@needs(DOCKERFILE)
def test_dockerfile_uses_the_project_python_and_a_non_root_user():
    version = (PROJECT_ROOT / ".python-version").read_text().strip()
    instructions = dockerfile_instructions()
    bases = [rest.split()[0] for kw, rest in instructions if kw == "FROM"]
    assert bases and all(base == f"python:{version}-slim" for base in bases), bases
    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    runs_as = users[-1]
    assert any(kw == "RUN" and "useradd" in rest and runs_as in rest for kw, rest in instructions)


@needs(DOCKERFILE)
def test_dockerfile_copies_files_that_exist_and_are_not_ignored():
    ignored = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    copies = [rest for kw, rest in dockerfile_instructions() if kw == "COPY"]
    sources = [s for rest in copies if not rest.startswith("--from") for s in rest.split()[:-1]]
    assert sources
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
    # The signing secret stays out of the image.
    assert ".env" in ignored and (PROJECT_ROOT / ".env").exists()


@needs(DOCKERFILE)
def test_dockerfile_runs_the_web_command_and_its_health_check_can_fail(web):
    assert dockerfile_exec_form("CMD") == WEB
    _, process, env = web
    check = local(dockerfile_exec_form("HEALTHCHECK"))
    assert subprocess.run(check, env=env, timeout=15).returncode == 0
    stop(process)
    down = subprocess.run(check, env=env, timeout=15, capture_output=True)
    assert down.returncode != 0


@needs(COMPOSE)
def test_compose_runs_redis_with_persistence_and_the_two_commands():
    services = compose()["services"]
    assert set(services) >= {"redis", "web", "worker"}
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert any(volume.endswith(":/data") for volume in services["redis"]["volumes"])
    assert services["web"]["command"] == WEB
    assert services["worker"]["command"] == WORKER
    for name in ("web", "worker"):
        service = services[name]
        assert service["build"] == "."
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:")
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


@needs(COMPOSE)
def test_compose_takes_the_secret_from_its_environment_not_from_the_local_env_file():
    """`.env` is for local runs: compose must not hand it to the containers. The secret is
    interpolated from the environment compose runs in (which reads `.env` on a developer's
    machine by itself), and compose refuses to start when it is unset."""
    services = compose()["services"]
    assert all("env_file" not in service for service in services.values())
    secret = services["web"]["environment"]["TW_WEBHOOK_SECRETS"]
    assert secret.startswith("${TW_WEBHOOK_SECRETS:?") and secret.endswith("}"), secret
    assert "TW_WEBHOOK_SECRETS" not in services["worker"]["environment"]  # needs none


@needs(DOCKERFILE)
def test_dockerfile_worker_example_drops_the_web_health_check():
    examples = dockerfile_run_examples()
    assert set(examples) == {"web", "worker"}
    assert "--no-healthcheck" not in examples["web"]
    assert "--no-healthcheck" in examples["worker"]
    if COMPOSE.exists():  # compose gives the worker a check of its own instead
        assert compose()["services"]["worker"]["healthcheck"]["test"][0] == "CMD"


@needs(DOCKERFILE)
def test_dockerfile_gives_handlers_one_writable_state_dir():
    state_dir = dockerfile_env()["TW_STATE_DIR"]
    assert state_dir.startswith("/var/lib/")
    user = [rest for kw, rest in dockerfile_instructions() if kw == "USER"][-1]
    assert any(
        kw == "RUN" and re.search(rf"install -d .*-o {user} .*\$TW_STATE_DIR", rest)
        for kw, rest in dockerfile_instructions()
    )
    [example_volume] = [
        arg.split(":")[1]
        for flag, arg in pairwise(dockerfile_run_examples()["worker"])
        if flag == "-v"
    ]
    assert example_volume == state_dir
    if COMPOSE.exists():
        config = compose()
        mounts = [v.split(":") for v in config["services"]["worker"]["volumes"]]
        assert [target for _, target in mounts] == [state_dir]
        assert all(source in config["volumes"] for source, _ in mounts)


@needs(COMPOSE)
def test_compose_publishes_the_webhooks_but_not_the_metrics():
    web = compose()["services"]["web"]
    metrics_port = str(Settings.metrics_port)
    assert web["expose"] == [metrics_port]
    assert not any(metrics_port in str(mapping) for mapping in web["ports"])


@needs(COMPOSE)
def test_compose_worker_health_check_reads_the_worker_metrics(redis_url, tmp_path):
    worker = compose()["services"]["worker"]
    port = str(free_port())
    compose_port = worker["environment"]["TW_WORKER_METRICS_PORT"]
    check = [part.replace(compose_port, port) for part in worker["healthcheck"]["test"][1:]]
    env = project_env(redis_url, TW_WORKER_METRICS_PORT=port)
    with running(local(WORKER), env, tmp_path / "worker.log"):
        wait_for(lambda: subprocess.run(local(check), capture_output=True).returncode == 0)
    assert subprocess.run(local(check), capture_output=True).returncode != 0


# --- Procfile --------------------------------------------------------------------------


@needs(PROCFILE)
def test_procfile_names_the_web_and_worker_commands():
    assert procfile() == {"web": WEB, "worker": WORKER}


# --- systemd ---------------------------------------------------------------------------


@needs(SYSTEMD)
@pytest.mark.parametrize(
    ("path", "command"), [(WEB_UNIT, WEB), (WORKER_UNIT, WORKER)], ids=["web", "worker"]
)
def test_systemd_units_parse_and_run_the_commands(path, command):
    parsed = unit(path)
    assert {"Unit", "Service", "Install"} <= set(parsed.sections())
    service = parsed["Service"]
    argv = exec_start(path)
    assert Path(argv[0]).is_absolute() and Path(argv[0]).name == command[0]
    assert argv[1:] == command[1:]
    # The script lives in the venv under the working directory, where gunicorn.conf.py is.
    assert argv[0].startswith(service["WorkingDirectory"] + "/")
    assert service["User"] not in ("root", "0")
    assert service["KillMode"] == "mixed"
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


@needs(SYSTEMD)
def test_systemd_web_unit_waits_for_gunicorn_to_be_ready():
    service = unit(WEB_UNIT)["Service"]
    assert service["Type"] == "notify"  # gunicorn tells systemd when it serves
    gunicorn_arbiter = Path(__import__("gunicorn.arbiter").arbiter.__file__).read_text()
    assert 'sd_notify("READY=1' in gunicorn_arbiter


@needs(SYSTEMD)
def test_systemd_worker_gives_handlers_one_writable_state_dir():
    """ProtectSystem=strict makes the file system read-only; StateDirectory= is the one
    place systemd makes (and owns by the service user), and TW_STATE_DIR names it."""
    service = unit(WORKER_UNIT)["Service"]
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == SLUG
    assert unit_environment(WORKER_UNIT)["TW_STATE_DIR"] == f"%S/{SLUG}"
    assert unit_environment(WORKER_UNIT)["TW_WORKER_METRICS_PORT"] == "9200"


@needs(SYSTEMD)
def test_systemd_worker_is_a_template_unit():
    assert WORKER_UNIT.name.endswith("@.service")
    assert "%i" in unit(WORKER_UNIT)["Unit"]["Description"]


@needs(SYSTEMD)
@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not found")
def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    """systemd's own check, with the install paths pointed at files that exist here."""
    bin_dir = tmp_path / "bin"  # the venv's scripts, as `local()` runs them here
    bin_dir.mkdir()
    for program in ("gunicorn", SLUG):
        script = bin_dir / program
        script.write_text(f'#!/bin/sh\nexec {shlex.join(local([program]))} "$@"\n')
        script.chmod(0o755)
    units = []
    for path, name in (
        (WEB_UNIT, WEB_UNIT.name),
        (WORKER_UNIT, WORKER_UNIT.name.replace("@", "@1")),
    ):
        text = path.read_text().replace(f"/opt/{SLUG}/.venv/bin", str(bin_dir))
        (tmp_path / name).write_text(text.replace(f"/opt/{SLUG}", str(PROJECT_ROOT)))
        units.append(str(tmp_path / name))
    command = ["systemd-analyze", "verify", "--man=no", *units]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    problems = [line for line in proc.stderr.splitlines() if str(tmp_path) in line]
    assert not problems, proc.stderr


# --- CI workflow, pre-commit and the Makefile ------------------------------------------


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args, f"PYTHON={sys.executable}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


needs_make = pytest.mark.skipif(not shutil.which("make"), reason="make not found")


@needs_make
def test_make_targets_run_the_same_commands():
    python = sys.executable
    expected = {
        "run": [python, "-m", *WEB],
        "dev": [python, "-m", PACKAGE, "dev"],
        "worker": [python, "-m", PACKAGE, "worker"],
        "test": [python, "-m", "pytest"],
    }
    for target, command in expected.items():
        dry = make("-n", target)
        assert dry.returncode == 0, dry.stderr
        assert shlex.split(dry.stdout) == command, target
    for target in ("lint", "format", "install", "help"):
        assert make("-n", target).returncode == 0, target


@needs(WORKFLOW)
@needs_make
def test_ci_workflow_lints_and_tests_against_a_redis_service():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    for job in jobs.values():
        setup = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python")]
        assert setup[0]["with"]["python-version-file"] == ".python-version"
    test_job = jobs["test"]
    assert "redis" in test_job["services"]
    assert test_job["env"]["TEST_REDIS_URL"].startswith("redis://localhost:6379/")
    commands = [s["run"] for job in jobs.values() for s in job["steps"] if "run" in s]
    assert "make lint" in commands and "make test" in commands
    # promtool and prometheus are there for the alert and dashboard tests, before they run.
    tests = [s["run"] for s in test_job["steps"] if "run" in s]
    install = next(i for i, c in enumerate(tests) if "apt-get install" in c)
    assert "prometheus" in tests[install].split() and install < tests.index("make test")
    for command in commands:
        if command.startswith("make "):
            assert make("-n", command.split()[1]).returncode == 0, command


def test_pre_commit_runs_the_pinned_ruff():
    config = yaml.safe_load((PROJECT_ROOT / ".pre-commit-config.yaml").read_text())
    local_hooks = [h for r in config["repos"] if r["repo"] == "local" for h in r["hooks"]]
    entries = {h["entry"].split()[0] for h in local_hooks}
    assert entries == {"ruff"}
    dev = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("ruff") for dep in dev["optional-dependencies"]["dev"])
    for hook in local_hooks:
        proc = subprocess.run(
            [sys.executable, "-m", *hook["entry"].split(), "--help"], capture_output=True
        )
        assert proc.returncode == 0, hook["entry"]


# --- compose.sentinel.yaml: a replica and three Sentinels ------------------------------
# Docker cannot be assumed here: the file is checked against the Redis configs it mounts,
# and `test_failover.py` runs those very configs with real redis-server processes.
SENTINEL_COMPOSE = PROJECT_ROOT / "compose.sentinel.yaml"
REDIS_SENTINEL_DIR = PROJECT_ROOT / "deploy" / "redis-sentinel"


@needs(SENTINEL_COMPOSE)
def test_compose_sentinel_wires_a_replica_three_sentinels_and_the_receiver_to_them():
    from {{ cookiecutter.package_name }}.config import settings_from_env

    services = yaml.safe_load(SENTINEL_COMPOSE.read_text())["services"]
    base = compose()["services"]
    sentinels = sorted(name for name in services if name.startswith("sentinel-"))
    assert len(sentinels) == 3
    # Every file the override mounts exists; each node and Sentinel keeps a volume of its own.
    mounts = [v for s in services.values() for v in s.get("volumes", ()) if v.startswith("./")]
    assert mounts and all((PROJECT_ROOT / m.split(":")[0]).is_file() for m in mounts)
    data = [
        v.split(":")[0] for s in services.values() for v in s.get("volumes", ()) if "/data" in v
    ]
    assert len(data) == len(set(data)) == 5
    # The replica follows the compose file's Redis, the first primary.
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :] == ["redis", "6379"]
    assert "redis" in base
    # The Sentinels watch that Redis under the name the receiver asks for, two must agree.
    monitor = re.search(
        r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$",
        (REDIS_SENTINEL_DIR / "sentinel.conf").read_text(),
        re.MULTILINE,
    )
    name, host, port, quorum = monitor.groups()
    assert (host, port, quorum) == ("redis", "6379", "2")
    for app in ("web", "worker"):
        env = services[app]["environment"]
        settings = settings_from_env({**base[app]["environment"], **env})
        assert settings.redis_sentinel_master == name
        assert {host for host, _ in settings.redis_sentinels} == set(sentinels)
        assert {port for _, port in settings.redis_sentinels} == {26379}
        assert settings.redis_ack_replicas == 1


def test_redis_sentinel_configs_turn_on_what_failover_needs():
    """AOF on every node, and a primary that refuses writes with no replica in sync."""
    config = dict(
        line.split(None, 1)
        for line in (REDIS_SENTINEL_DIR / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert config["appendonly"] == "yes"
    assert config["maxmemory-policy"] == "noeviction"
    assert int(config["min-replicas-to-write"]) >= 1
    assert int(config["min-replicas-max-lag"]) > 0
