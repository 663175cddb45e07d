"""The dashboard and the alert rules against a real Prometheus scraping a real receiver
and worker.

gunicorn (its metrics on their own port) and a worker on the orders queue only (its
metrics on `TW_WORKER_METRICS_PORT`) run against the test's Redis, which has a replica
that confirms their writes (`TW_REDIS_ACK_REPLICAS=1`); a Prometheus scrapes both every
second with deploy/prometheus/alerts.yml loaded. A reconciliation pass ran and a lane is
blocked (their state written as they write it). Deliveries go in: orders, some failing
every retry; prices, waiting with no worker on their queue; wrong signatures and stale
timestamps. Then every query of deploy/grafana/dashboard.json and every alert's
expression goes through Prometheus' HTTP API: each must be valid, each whose data this
traffic makes must return some (and the alerts this traffic must not trigger, none), and
every metric they name must be one the receiver or the worker exports.
"""

import contextlib
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import redis
import yaml
from external_tools import require
from processes import PROJECT_ROOT, gunicorn, project_env, running, wait_for, wait_until_up
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }}.dev.embedded_redis import find_redis_server, free_port
from {{ cookiecutter.package_name }}.lanes import BLOCKED_KEY
from {{ cookiecutter.package_name }}.metrics import REGISTRY
from {{ cookiecutter.package_name }}.reconcile import save_watermark
from {{ cookiecutter.package_name }}.testing import TEST_SECRET, make_event, signed_headers

pytestmark = pytest.mark.e2e
PACKAGE = "{{ cookiecutter.package_name }}"
WEBHOOK_PATH = "{{ cookiecutter.webhook_path }}"
ALERTS = PROJECT_ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboard.json"
# Grafana's own variables, given the values Grafana would pick for a short time range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "5m"}
# The per-secret counter; its queries must have data once the receiver exports it.
VERIFIED = "tw_webhooks_verified_total"
# Alerts whose condition this traffic creates (the others must stay empty). The 429 one
# only when a delivery was refused with 429 (TW_MAX_QUEUE_DEPTH is set below).
ALERTS_WITH_DATA = {
    "TWEventsFailedEveryRetry",  # three orders fail every retry
    "TWNoWorkerAlive",  # prices wait, and no worker listens on prices
    "TWForgedDeliveries",  # wrong signatures among good deliveries
    "TWStaleOrMalformedSignatures",  # stale timestamps
}
BACKPRESSURE_ALERT = "TWBackpressureRefusals"
FAILING = 3  # orders whose handler fails every retry
MAX_QUEUE_DEPTH = 10  # waiting events (more than the orders sent at once) before 429


class Prometheus:
    def __init__(self, base: str):
        self.base = base

    def get(self, path: str, **params: str) -> dict:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:  # a bad query is a 400 with the reason
            return json.load(exc)

    def query(self, expr: str) -> list[dict]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        return answer["data"]["result"]

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else float("nan")


def config(receiver: int, worker: int) -> dict:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "receiver", "static_configs": [{"targets": [f"127.0.0.1:{receiver}"]}]},
            {"job_name": "worker", "static_configs": [{"targets": [f"127.0.0.1:{worker}"]}]},
        ],
    }


def post(base: str, event: dict, secret: str = TEST_SECRET, timestamp: int | None = None) -> int:
    body = json.dumps(event).encode()
    request = urllib.request.Request(
        base + WEBHOOK_PATH, data=body, headers=signed_headers(body, secret, timestamp)
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title, legend, query with Grafana's variables filled in) for every query."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    targets = []
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            targets.append((panel["title"], target["legendFormat"], expr))
    return targets


def alert_exprs() -> dict[str, str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def exported_names(*scrapes: str) -> set[str]:
    """Every sample name the project's metrics can have, and those the scrapes show."""
    names = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
    for text in scrapes:
        names.update(s.name for f in text_string_to_metric_families(text) for s in f.samples)
    return names


def steady_traffic(base: str, seconds: float) -> None:
    """A minute of mixed deliveries, for a picture of the dashboard: orders (one in 25
    failing), prices (no worker takes them), repeats, wrong secrets, stale timestamps."""
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
        order = make_event("order.created", {"n": n, "fail": n % 25 == 0})
        post(base, order)
        if n % 3 == 0:
            post(base, make_event("price.updated"))
        if n % 10 == 0:
            post(base, order)
        if n % 20 == 0:
            post(base, make_event("price.updated"), secret="whsec_wrong")
        if n % 30 == 0:
            post(base, make_event("price.updated"), timestamp=int(time.time()) - 400)
        time.sleep(0.1)


def keep_series(prom: Prometheus, start: float, path: Path) -> None:
    """Write each panel's series since `start` to `path` (JSON), queried as Grafana would
    with 1 s scrapes; for drawing the dashboard from real data."""
    panels = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        series = []
        for target in panel.get("targets", []):
            answer = prom.get(
                "/api/v1/query_range",
                query=target["expr"].replace("$__rate_interval", "4s"),
                start=str(start),
                end=str(time.time()),
                step="1",
            )
            for result in answer["data"]["result"]:
                legend, labels = target["legendFormat"], result["metric"]
                series.append({"legend": legend, "labels": labels, "values": result["values"]})
        panels.append({**panel, "series": series})
    path.write_text(json.dumps(panels, indent=1))


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def linked(replica: redis.Redis) -> bool:
    with contextlib.suppress(redis.RedisError):
        return replica.info("replication").get("master_link_status") == "up"
    return False


@contextlib.contextmanager
def replica(redis_url: str, tmp_path: Path):
    """A replica of the test's Redis, in sync, for `TW_REDIS_ACK_REPLICAS=1` to wait on."""
    where = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    port = free_port()
    command = [
        find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
        "--replicaof", where.get("host", "127.0.0.1"), str(where.get("port", 6379)),
    ]  # fmt: skip
    with running(command, {}, tmp_path / "replica.log"):
        own = redis.Redis(port=port)
        wait_for(lambda: linked(own))
        yield


@contextlib.contextmanager
def prometheus(tmp_path: Path, receiver: int, worker: int):
    binary = require("prometheus")
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config(receiver, worker)))
    command = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    log = tmp_path / "prometheus.log"
    with running(command, {}, log) as process:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/-/ready", process, log)
        yield Prometheus(base)


def test_every_panel_and_alert_query_runs_on_real_metrics(redis_url, tmp_path):
    receiver_port, worker_port = free_port(), free_port()
    env = project_env(
        redis_url,
        TW_HANDLER_MODULES="failing_handlers",
        TW_METRICS_PORT=str(receiver_port),
        TW_WORKER_METRICS_PORT=str(worker_port),
        TW_RETRY_MAX="1",
        TW_MAX_QUEUE_DEPTH=str(MAX_QUEUE_DEPTH),
        TW_REDIS_ACK_REPLICAS="1",
        TW_REDIS_ACK_TIMEOUT_MS="4000",  # a loaded test machine is no reason to answer 503
    )
    worker_command = [sys.executable, "-m", PACKAGE, "worker", "--queue", "orders"]
    with (
        replica(redis_url, tmp_path),
        gunicorn(env, tmp_path / "web.log", workers=1) as base,
        running(worker_command, env, tmp_path / "worker.log"),
        prometheus(tmp_path, receiver_port, worker_port) as prom,
    ):
        wait_for(lambda: prom.value('sum(up{job=~"receiver|worker"})') == 2)
        # A reconciliation pass ran (its watermark is fresh): docs/reconcile.md. A lane
        # has been blocked for a minute, as a handler failing every retry leaves it
        # (docs/lanes.md; not yet the ten minutes of TWLaneBlocked).
        connection = redis.Redis.from_url(redis_url)
        save_watermark(connection, (int(time.time()), ""))
        connection.zadd(BLOCKED_KEY, {"lane_handlers.apply:ord_1": int(time.time()) - 60})
        started = time.time()
        # One of each outcome first, so that Prometheus has each counter's series before
        # the burst: an increase is counted from a series' first scrape.
        stale = int(time.time()) - 400
        first = [
            post(base, make_event("price.updated"), secret="whsec_wrong"),
            post(base, make_event("price.updated"), timestamp=stale),
            post(base, make_event("order.created", {"n": 0})),
        ]
        assert first == [401, 401, 202]
        wait_for(lambda: prom.query('tw_webhooks_enqueued_total{queue="orders"}'))
        statuses = [post(base, make_event("order.created", {"n": n})) for n in range(1, 6)]
        statuses += [
            post(base, make_event("order.created", {"fail": True})) for _ in range(FAILING)
        ]
        # Prices fill their queue (no worker takes them), then one more, and once more
        # after a scrape if that one was refused (when the receiver applies
        # TW_MAX_QUEUE_DEPTH, the 429s are counted as rejected `queue_full`).
        statuses += [post(base, make_event("price.updated")) for _ in range(MAX_QUEUE_DEPTH + 1)]
        if statuses[-1] == 429:
            wait_for(lambda: prom.query('tw_webhooks_rejected_total{code="queue_full"}'))
        statuses.append(post(base, make_event("price.updated")))
        refused = statuses.count(429)
        assert statuses.count(202) == len(statuses) - refused
        assert refused in (0, 2)  # 2 once the receiver applies TW_MAX_QUEUE_DEPTH
        for _ in range(6):
            assert post(base, make_event("price.updated"), secret="whsec_wrong") == 401
            assert post(base, make_event("price.updated"), timestamp=stale) == 401
        # The failing orders end in the failed registry after their one retry.
        wait_for(lambda: prom.value('max(tw_queue_failed{queue="orders"})') == FAILING)
        wait_for(lambda: prom.value("sum(tw_handler_failures_total)") == 2 * FAILING)
        time.sleep(2)  # two more scrapes and rule evaluations

        scrapes = [fetch(f"http://127.0.0.1:{p}/metrics") for p in (receiver_port, worker_port)]
        exported = exported_names(*scrapes)
        verified = VERIFIED in exported
        empty = []
        for title, legend, expr in dashboard_targets():
            result = prom.query(expr)  # fails the test if Prometheus refuses it
            if VERIFIED in expr:
                should_have_data = verified
            else:
                should_have_data = "tw_webhooks_errors_total" not in expr  # no 5xx here
            if should_have_data and not result:
                empty.append(f"{title} / {legend}: {expr}")
        assert empty == [], "panel queries without data"

        alerts = alert_exprs()
        with_data = ALERTS_WITH_DATA | ({BACKPRESSURE_ALERT} if refused else set())
        got = {name for name, expr in alerts.items() if prom.query(expr)}
        assert got == with_data
        # Prometheus loaded the file and evaluates every rule without error.
        rules = prom.get("/api/v1/rules")["data"]["groups"][0]["rules"]
        assert {rule["name"] for rule in rules} == set(alerts)
        assert {rule["health"] for rule in rules} == {"ok"}
        if os.environ.get("DASHBOARD_DATA"):  # a path: keep the panels' data there
            steady_traffic(base, 60)
            keep_series(prom, started - 2, Path(os.environ["DASHBOARD_DATA"]))

    named = {
        name
        for expr in [*alerts.values(), *(expr for _, _, expr in dashboard_targets())]
        for name in re.findall(r"\btw_\w+", expr)
    }
    unknown = named - exported - ({VERIFIED} if not verified else set())
    assert unknown == set(), "queries name metrics nobody exports"
