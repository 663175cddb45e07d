"""Which secret verified each delivery: the counter per secret, the last use in Redis, and
the `secrets` command, none of which ever shows a secret."""

import dataclasses
import hashlib
import re
import time

import pytest

from {{ cookiecutter.package_name }} import cli, metrics, secret_usage
from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.intake import SECRETS_USED_KEY, Intake, secrets_last_verified
from {{ cookiecutter.package_name }}.routing import routes
from {{ cookiecutter.package_name }}.signature import check, fingerprint, sign
from {{ cookiecutter.package_name }}.testing import make_event, signed_post

NEW, OLD = "whsec_new_0f1e2d3c4b5a", "whsec_old_a5b4c3d2e1f0"
BODY = b'{"id":"evt_1"}'


def test_check_names_the_first_listed_secret_that_matched():
    now = int(time.time())
    assert check(sign(BODY, NEW, now), BODY, [NEW, OLD]).secret_index == 0
    assert check(sign(BODY, OLD, now), BODY, [NEW, OLD]).secret_index == 1
    # The sender signs with both during the switch: the new one, listed first, is credited.
    assert check(sign(BODY, [OLD, NEW], now), BODY, [NEW, OLD]).secret_index == 0
    assert check(sign(BODY, [OLD, NEW], now), BODY, [OLD, NEW]).secret_index == 0
    assert check(sign(BODY, OLD, now), BODY, ["a", "b", OLD]) == (
        type(check(sign(BODY, OLD, now), BODY, [OLD]))(now, 2)
    )


def test_a_fingerprint_is_short_stable_distinct_and_not_the_secret():
    prints = {secret: fingerprint(secret) for secret in (NEW, OLD, "x", "")}
    assert all(re.fullmatch(r"[0-9a-f]{8}", p) for p in prints.values())
    assert len(set(prints.values())) == 4
    assert fingerprint(NEW) == prints[NEW]
    # Not a plain SHA-256 of the secret either, which could be matched elsewhere.
    assert prints[NEW] != hashlib.sha256(NEW.encode()).hexdigest()[:8]


@pytest.fixture
def rotating(settings, redis_conn):
    """A receiver in the middle of a rotation: TW_WEBHOOK_SECRETS=new,old."""
    routes.clear_handlers()
    rotation = dataclasses.replace(settings, secrets=(NEW, OLD))
    return create_app(rotation, connection=redis_conn).test_client()


def verified_counts() -> dict[tuple[str, str], float]:
    return {
        (sample.labels["secret"], sample.labels["fingerprint"]): sample.value
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
        if sample.name == "tw_webhooks_verified_total"
    }


def test_each_delivery_counts_for_the_secret_that_verified_it(rotating, redis_conn):
    before = verified_counts()
    assert set(before) >= {("1", fingerprint(NEW)), ("2", fingerprint(OLD))}  # from the start
    event = make_event()
    assert signed_post(rotating, event, secret=OLD).status_code == 202
    assert signed_post(rotating, event, secret=OLD).status_code == 200  # a duplicate counts too
    assert signed_post(rotating, make_event(), secret=NEW).status_code == 202
    assert signed_post(rotating, make_event(), secret="whsec_wrong").status_code == 401
    after = verified_counts()
    assert after["2", fingerprint(OLD)] - before["2", fingerprint(OLD)] == 2
    assert after["1", fingerprint(NEW)] - before["1", fingerprint(NEW)] == 1


def test_the_last_use_of_each_secret_is_kept_in_redis(rotating, redis_conn):
    assert secrets_last_verified(redis_conn) == {}
    start = float(redis_conn.time()[0])
    assert signed_post(rotating, make_event(), secret=OLD).status_code == 202
    used = secrets_last_verified(redis_conn)
    assert list(used) == [fingerprint(OLD)]
    assert start <= used[fingerprint(OLD)] <= float(redis_conn.time()[0])
    assert signed_post(rotating, make_event(), secret=NEW).status_code == 202
    assert set(secrets_last_verified(redis_conn)) == {fingerprint(OLD), fingerprint(NEW)}


def test_intake_without_a_fingerprint_notes_nothing(settings, redis_conn):
    assert Intake(redis_conn, settings).submit(make_event())
    assert not redis_conn.exists(SECRETS_USED_KEY)


def test_secret_usage_lists_configured_then_others(redis_conn):
    redis_conn.hset(SECRETS_USED_KEY, mapping={fingerprint(OLD): 1_700_000_000, "0badc0de": 5})
    uses = secret_usage.secret_usage(redis_conn, [NEW, OLD])
    assert [(u.position, u.fingerprint) for u in uses] == [
        (1, fingerprint(NEW)),
        (2, fingerprint(OLD)),
        (None, "0badc0de"),
    ]
    assert uses[0].last_verified is None
    assert uses[1].last_verified.timestamp() == 1_700_000_000
    assert uses[2].last_verified.timestamp() == 5


def test_the_secrets_command_shows_fingerprints_and_last_use_never_a_secret(
    rotating, redis_conn, redis_url, monkeypatch, tmp_path, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("TW_WEBHOOK_SECRETS", f"{NEW},{OLD}")
    assert signed_post(rotating, make_event(), secret=OLD).status_code == 202
    redis_conn.hset(SECRETS_USED_KEY, "0badc0de", int(time.time()) - 7200)

    assert cli.main(["secrets"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split() == ["secret", "fingerprint", "last", "verified", "a", "delivery"]
    assert lines[1].split() == ["1", fingerprint(NEW), "never"]
    assert lines[2].split()[:2] == ["2", fingerprint(OLD)]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(\d+s ago\)$", lines[2])
    assert lines[3].split()[:3] == ["not", "here", "0badc0de"]
    assert lines[3].endswith("(2h ago)")
    assert "another receiver sharing this Redis" in captured.out
    for secret in (NEW, OLD):
        for part in (secret, secret[6:], secret[-8:]):
            assert part not in captured.out + captured.err

    monkeypatch.delenv("TW_WEBHOOK_SECRETS")
    assert cli.main(["secrets"]) == 2
    assert "TW_WEBHOOK_SECRETS is not set" in capsys.readouterr().err
