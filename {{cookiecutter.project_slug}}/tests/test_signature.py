"""The signing contract, case by case, without Flask or Redis."""

import hashlib
import hmac
import re

import pytest

from {{ cookiecutter.package_name }}.signature import (
    SignatureError,
    compute_signature,
    parse_header,
    sign,
    verify,
)

SECRET = "whsec_current"
OLD_SECRET = "whsec_previous"
BODY = b'{"id":"evt_1","type":"order.created","created":1734650000,"data":{}}'
NOW = 1_734_650_000


def header_for(body=BODY, secret=SECRET, t=NOW):
    return f"t={t},v1={compute_signature(secret, t, body)}"


def code_of(header, body=BODY, secrets=(SECRET,), now=NOW, tolerance=300):
    with pytest.raises(SignatureError) as caught:
        verify(header, body, secrets, tolerance=tolerance, now=now)
    return caught.value.code


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, NOW, BODY) == expected


def test_valid_header_returns_its_timestamp():
    assert verify(header_for(), BODY, [SECRET], now=NOW) == NOW


def test_sign_produces_a_header_that_verifies():
    assert verify(sign(BODY, SECRET, NOW), BODY, [SECRET], now=NOW) == NOW


def test_any_of_several_v1_may_match():
    header = f"t={NOW},v1={'0' * 64},v1={compute_signature(SECRET, NOW, BODY)}"
    assert verify(header, BODY, [SECRET], now=NOW) == NOW


def test_rotated_secrets_old_or_new_match():
    assert verify(header_for(secret=OLD_SECRET), BODY, [SECRET, OLD_SECRET], now=NOW) == NOW
    assert verify(header_for(secret=SECRET), BODY, [SECRET, OLD_SECRET], now=NOW) == NOW


def test_sender_signing_with_both_secrets_during_rotation():
    header = sign(BODY, [OLD_SECRET, SECRET], NOW)
    assert header.count("v1=") == 2
    assert verify(header, BODY, [SECRET], now=NOW) == NOW


def test_secret_not_configured_is_a_mismatch():
    assert code_of(header_for(secret="whsec_other")) == "signature_mismatch"


def test_tampered_body_is_a_mismatch():
    assert code_of(header_for(), body=BODY.replace(b"evt_1", b"evt_2")) == "signature_mismatch"


def test_signature_over_another_timestamp_is_a_mismatch():
    signature = compute_signature(SECRET, NOW - 1, BODY)
    assert code_of(f"t={NOW},v1={signature}") == "signature_mismatch"


@pytest.mark.parametrize("offset", [-299, 299, 0])
def test_one_second_inside_tolerance_passes(offset):
    t = NOW + offset
    assert verify(header_for(t=t), BODY, [SECRET], now=NOW) == t


@pytest.mark.parametrize("offset", [-301, 301, -300, 300])
def test_at_or_beyond_tolerance_fails_in_both_directions(offset):
    assert code_of(header_for(t=NOW + offset)) == "timestamp_out_of_tolerance"


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (-3598, "The signature timestamp is 3598 s old; the limit is 300 s either way."),
        (
            3598,
            "The signature timestamp is 3598 s in the future (is this server's clock right?); "
            "the limit is 300 s either way.",
        ),
    ],
)
def test_a_stale_timestamp_says_whether_it_is_old_or_in_the_future(offset, message):
    with pytest.raises(SignatureError, match="^" + re.escape(message) + "$"):
        verify(header_for(t=NOW + offset), BODY, [SECRET], now=NOW)


def test_tolerance_is_configurable():
    assert verify(header_for(t=NOW - 500), BODY, [SECRET], now=NOW, tolerance=600) == NOW - 500


def test_unknown_schemes_and_whitespace_are_tolerated():
    good = compute_signature(SECRET, NOW, BODY)
    header = f"  t = {NOW} , v0=whatever , scheme2=xyz,  v1={good.upper()}  "
    assert verify(header, BODY, [SECRET], now=NOW) == NOW


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_or_empty_header(header):
    assert code_of(header) == "signature_missing"


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "t=,v1=" + "a" * 64,
        "t=abc,v1=" + "a" * 64,
        "t=-5,v1=" + "a" * 64,
        "t=1.5,v1=" + "a" * 64,
        "t=9999999999999999999999,v1=" + "a" * 64,
        f"t={NOW}",
        f"t={NOW},v0=" + "a" * 64,
        "v1=" + "a" * 64,
        f"t={NOW},t={NOW},v1=" + "a" * 64,
        f"t={NOW},v1=" + "a" * 63,
        f"t={NOW},v1=" + "a" * 65,
        f"t={NOW},v1=" + "g" * 64,
        f"t={NOW},v1=",
        f"t={NOW},=abc,v1=" + "a" * 64,
        f"t={NOW},v1=" + "é" * 64,
        "t=\uff11\uff12\uff13,v1=" + "a" * 64,
        ",,,",
    ],
    ids=lambda h: repr(h)[:40],
)
def test_malformed_headers(header):
    assert code_of(header) == "signature_malformed"


def test_errors_carry_a_precise_message():
    with pytest.raises(SignatureError, match="64 hexadecimal"):
        parse_header(f"t={NOW},v1=abc")


def test_parse_header_lowercases_and_keeps_every_v1():
    parsed = parse_header(f"t={NOW},v1={'A' * 64},v1={'b' * 64}")
    assert parsed.timestamp == NOW
    assert parsed.signatures == ("a" * 64, "b" * 64)
