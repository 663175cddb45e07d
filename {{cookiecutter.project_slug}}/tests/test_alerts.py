"""The alert rules in deploy/prometheus/alerts.yml, run by promtool on made-up series.

`promtool check rules` parses them; `promtool test rules` feeds each alert series and
checks, at given times, exactly which alerts fire (label sets and rendered annotations):
every alert must fire in one case and stay quiet in another. Two receivers (`instance`
a and b) report the same queue gauges, as they do when they share one Redis.
"""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml
from external_tools import require

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "alerts.yml"


@dataclass(frozen=True)
class Case:
    """Series in (promtool's expanding notation, one sample a minute), alerts out."""

    name: str
    series: dict[str, str]
    # (alert, minutes after the start, the label sets firing then: empty means quiet)
    checks: list[tuple[str, int, list[dict[str, str]]]]


def both(series: str, values: str) -> dict[str, str]:
    """The same series from the two receivers."""
    return {
        series.replace("{", '{instance="a",', 1): values,
        series.replace("{", '{instance="b",', 1): values,
    }


ORDERS, PRICES = {"queue": "orders"}, {"queue": "prices"}

CASES = [
    Case(
        "an event failed every retry: the failed registry grows on one queue",
        {**both('tw_queue_failed{queue="orders"}', "0x10 1x10"),
         **both('tw_queue_failed{queue="prices"}', "2x20")},
        [("TWEventsFailedEveryRetry", 12, [ORDERS]),
         ("TWEventsFailedEveryRetry", 5, [])],
    ),
    Case(
        "old failures only, then requeued with `failed retry`",
        both('tw_queue_failed{queue="orders"}', "3x20 0x10"),
        [("TWEventsFailedEveryRetry", 18, []), ("TWEventsFailedEveryRetry", 25, [])],
    ),
    Case(
        "the first waiting order ages a minute per minute; prices stay fresh",
        {**both('tw_queue_oldest_job_age_seconds{queue="orders"}', "0+60x10"),
         **both('tw_queue_oldest_job_age_seconds{queue="prices"}', "100x10")},
        # Over 120 s from minute 3, for 2 minutes: firing from minute 5.
        [("TWQueueLagging", 4, []), ("TWQueueLagging", 6, [ORDERS])],
    ),
    Case(
        "events wait on orders and no worker beats; prices has none waiting",
        {**both('tw_queue_depth{queue="orders"}', "5x10"),
         **both('tw_workers_alive{queue="orders"}', "0x10"),
         **both('tw_queue_depth{queue="prices"}', "0x10"),
         **both('tw_workers_alive{queue="prices"}', "0x10")},
        [("TWNoWorkerAlive", 0, []), ("TWNoWorkerAlive", 3, [ORDERS])],
    ),
    Case(
        "events wait and a worker is alive",
        {**both('tw_queue_depth{queue="orders"}', "50x10"),
         **both('tw_workers_alive{queue="orders"}', "1x10")},
        [("TWNoWorkerAlive", 5, [])],
    ),
    Case(
        "nine deliveries in ten fail the signature: the secret is wrong",
        {"tw_webhooks_received_total": "0+10x20",
         'tw_webhooks_rejected_total{code="signature_mismatch"}': "0+9x20"},
        [("TWSigningSecretWrong", 3, []), ("TWSigningSecretWrong", 10, [{}]),
         ("TWForgedDeliveries", 10, [])],
    ),
    Case(
        "a few wrong signatures among many good deliveries: someone else posts",
        {"tw_webhooks_received_total": "0+100x20",
         'tw_webhooks_rejected_total{code="signature_mismatch"}': "0+2x20"},
        [("TWForgedDeliveries", 12, [{}]), ("TWSigningSecretWrong", 12, [])],
    ),
    Case(
        "one wrong signature is no burst",
        {"tw_webhooks_received_total": "0+100x20",
         'tw_webhooks_rejected_total{code="signature_mismatch"}': "0x10 1x10"},
        [("TWForgedDeliveries", 15, []), ("TWSigningSecretWrong", 15, [])],
    ),
    Case(
        "stale timestamps and malformed headers, told apart by code",
        {"tw_webhooks_received_total": "0+100x20",
         'tw_webhooks_rejected_total{code="timestamp_out_of_tolerance"}': "0+1x20",
         'tw_webhooks_rejected_total{code="signature_malformed"}': "0+1x20",
         'tw_webhooks_rejected_total{code="signature_missing"}': "0x10 3x10",
         'tw_webhooks_rejected_total{code="invalid_json"}': "0+9x20"},
        [("TWStaleOrMalformedSignatures", 15,
          [{"code": "timestamp_out_of_tolerance"}, {"code": "signature_malformed"}]),
         ("TWStaleOrMalformedSignatures", 3, [])],
    ),
    Case(
        "one receiver loses Redis for good; a blip on the other",
        {'tw_redis_up{instance="a"}': "1 1 0 0 0 0 0 0",
         'tw_redis_up{instance="b"}': "1 1 1 1 1 1 1 1"},
        [("TWRedisUnreachable", 2, []), ("TWRedisUnreachable", 5, [{}])],
    ),
    Case(
        "a Redis blip that lasts less than a minute",
        {'tw_redis_up{instance="a"}': "1 0 1 1 1 1 1"},
        [("TWRedisUnreachable", 3, [])],
    ),
    Case(
        "503s answered for minutes, then none",
        {'tw_webhooks_errors_total{code="storage_unavailable"}': "0+3x8 24x12"},
        [("TWDeliveriesAnswered5xx", 2, []),
         ("TWDeliveriesAnswered5xx", 5, [{"code": "storage_unavailable"}]),
         ("TWDeliveriesAnswered5xx", 18, [])],
    ),
    Case(
        "429 queue_full refusals, then the workers catch up",
        {'tw_webhooks_rejected_total{code="queue_full"}': "0 0 0 4 8 8x10",
         'tw_webhooks_rejected_total{code="signature_mismatch"}': "0+1x15"},
        [("TWBackpressureRefusals", 2, []), ("TWBackpressureRefusals", 4, [{}]),
         ("TWBackpressureRefusals", 12, [])],
    ),
    Case(
        "a pass delivers two missed changes, then half an hour finds nothing",
        {**both('tw_reconcile_events_total{type="order.confirmed"}', "0x5 2x40"),
         **both('tw_reconcile_events_total{type="order.created"}', "3x45")},
        [("TWWebhooksMissed", 3, []), ("TWWebhooksMissed", 10, [{}]),
         ("TWWebhooksMissed", 40, [])],
    ),
    Case(
        "the watermark stops moving; a fresh one stays quiet",
        {'tw_reconcile_watermark_age_seconds{instance="a"}': "3000+60x30",
         'tw_reconcile_watermark_age_seconds{instance="b"}': "3000+60x30"},
        # Over an hour from minute 11, for 10 minutes: firing from minute 21.
        [("TWReconcileStalled", 15, []), ("TWReconcileStalled", 22, [{}])],
    ),
    Case(
        "passes keep the watermark a minute old",
        both("tw_reconcile_watermark_age_seconds{}", "60x30"),
        [("TWReconcileStalled", 25, [])],
    ),
    # Lanes: the oldest blocked lane's age grows a minute per minute, then it is unblocked.
    Case(
        "a lane blocked for 15 minutes, then retried",
        both("tw_lanes_oldest_blocked_age_seconds", "0+60x15 0x5"),
        [("TWLaneBlocked", 8, []), ("TWLaneBlocked", 12, [{}]), ("TWLaneBlocked", 18, [])],
    ),
]  # fmt: skip

# --- Replicas' confirmations (TW_REDIS_ACK_REPLICAS) ------------------------------------
CASES += [
    Case(
        "the replica stops confirming: intake refuses, workers wait; then it is back",
        {'tw_redis_not_replicated_total{by="intake"}': "0 0 0 5 10 15 20 25 25x10",
         'tw_redis_not_replicated_total{by="worker"}': "0 0 0 3 6 9 9x10"},
        [("TWReplicasNotConfirming", 2, []),
         ("TWReplicasNotConfirming", 5, [{"by": "intake"}, {"by": "worker"}]),
         ("TWReplicasNotConfirming", 16, [])],
    ),
]  # fmt: skip


def alert_rules() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def rendered(text: str, labels: dict[str, str]) -> str:
    """An annotation as Prometheus renders it; the rules use no template but `$labels.x`."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)


def promtool_tests(rules: dict[str, dict]) -> dict:
    tests = []
    for case in CASES:
        checks = []
        for alert, minute, firing in case.checks:
            rule = rules[alert]
            expected = []
            for labels in firing:
                all_labels = {**rule["labels"], **labels}
                annotations = {k: rendered(v, all_labels) for k, v in rule["annotations"].items()}
                expected.append({"exp_labels": all_labels, "exp_annotations": annotations})
            checks.append({"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": expected})
        tests.append(
            {
                "name": case.name,
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": checks,
            }
        )
    return {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}


def test_promtool_accepts_the_rules():
    promtool = require("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_every_alert_has_a_severity_a_summary_and_a_description():
    for name, rule in alert_rules().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        assert len(rule["annotations"]["description"]) > 200, name  # something to act on


def test_every_alert_fires_when_it_should_and_only_then(tmp_path):
    promtool = require("promtool")
    rules = alert_rules()
    fired = {alert for case in CASES for alert, _, firing in case.checks if firing}
    quiet = {alert for case in CASES for alert, _, firing in case.checks if not firing}
    assert fired == quiet == set(rules), "each alert needs a firing and a quiet case"
    tests = tmp_path / "alerts-test.yml"
    tests.write_text(yaml.safe_dump(promtool_tests(rules), sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_a_wrong_expectation_fails(tmp_path):
    """promtool is really checking: claim an alert fires where it must not, and it fails."""
    promtool = require("promtool")
    alert = "TWQueueLagging"
    rules = alert_rules()
    spec = promtool_tests(rules)
    for test in spec["tests"]:
        for check in test["alert_rule_test"]:
            if check["alertname"] == alert and not check["exp_alerts"]:
                check["exp_alerts"] = [{"exp_labels": rules[alert]["labels"]}]
    tests = tmp_path / "alerts-test.yml"
    tests.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True)
    assert result.returncode != 0
