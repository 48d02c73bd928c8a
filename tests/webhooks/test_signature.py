"""``cio_relay.webhooks.signature``: a known-answer vector and one test per failure mode."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cio_relay.errors import SignatureError
from cio_relay.webhooks.signature import check_headers, sign, signature_headers, verify

KEY = b"whsec_test_key_0123456789"
TIMESTAMP = "1700000000"
BODY = (
    b'{"event_id":"01HZX5Y2Q9G9E0F1T6V3W8K7M4","object_type":"email","metric":"bounced",'
    b'"timestamp":1700000000,"data":{}}'
)
#: HMAC-SHA256 of b"v0:1700000000:" + BODY under KEY, computed once with Python's hmac module
#: and pinned here: if signing ever changes, this test says so.
EXPECTED = "e0e68c7e90d244ade99a431e77ca41ccb662f2025c768682604c4e43a9dcda8d"
NOW = 1700000000.0


def test_known_answer_vector() -> None:
    independent = hmac.new(KEY, b"v0:" + TIMESTAMP.encode() + b":" + BODY, hashlib.sha256)
    assert independent.hexdigest() == EXPECTED
    assert sign(KEY, TIMESTAMP, BODY) == EXPECTED
    assert sign(KEY.decode(), int(TIMESTAMP), BODY) == EXPECTED
    assert verify([KEY], TIMESTAMP, EXPECTED, BODY, now=NOW) == int(TIMESTAMP)


def test_uppercase_hex_is_accepted() -> None:
    assert verify([KEY], TIMESTAMP, EXPECTED.upper(), BODY, now=NOW) == int(TIMESTAMP)


def test_signature_headers_carry_the_timestamp_and_signature() -> None:
    headers = signature_headers(KEY, BODY, timestamp=int(TIMESTAMP))
    assert headers == {"X-CIO-Timestamp": TIMESTAMP, "X-CIO-Signature": EXPECTED}


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [(None, EXPECTED), (TIMESTAMP, None), (None, None), ("", EXPECTED), (TIMESTAMP, "")],
)
def test_missing_headers_fail(timestamp: str | None, signature: str | None) -> None:
    with pytest.raises(SignatureError, match="missing"):
        verify([KEY], timestamp, signature, BODY, now=NOW)


@pytest.mark.parametrize(
    "signature",
    [
        "z" * 64,  # not hex
        EXPECTED[:-1],  # one digit short
        EXPECTED + "0",  # one digit long
        "sha256=" + EXPECTED,  # a scheme prefix we do not speak
        "é" * 64,
    ],
)
def test_non_hex_or_wrong_length_signature_fails(signature: str) -> None:
    with pytest.raises(SignatureError, match="malformed signature"):
        verify([KEY], TIMESTAMP, signature, BODY, now=NOW)


FULL_WIDTH_DIGITS = "\uff11\uff17\uff10\uff10"


@pytest.mark.parametrize("timestamp", ["17e8", "-1700000000", "1700000000.5", FULL_WIDTH_DIGITS])
def test_malformed_timestamp_fails(timestamp: str) -> None:
    with pytest.raises(SignatureError, match="malformed timestamp"):
        verify([KEY], timestamp, EXPECTED, BODY, now=NOW)


def test_wrong_key_fails() -> None:
    with pytest.raises(SignatureError, match="mismatch"):
        verify([b"another-key"], TIMESTAMP, EXPECTED, BODY, now=NOW)


def test_stale_timestamp_fails_just_past_the_tolerance() -> None:
    assert verify([KEY], TIMESTAMP, EXPECTED, BODY, now=NOW + 300) == int(TIMESTAMP)
    with pytest.raises(SignatureError, match="tolerance"):
        verify([KEY], TIMESTAMP, EXPECTED, BODY, now=NOW + 301)


def test_future_timestamp_fails_just_past_the_tolerance() -> None:
    assert verify([KEY], TIMESTAMP, EXPECTED, BODY, now=NOW - 300) == int(TIMESTAMP)
    with pytest.raises(SignatureError, match="tolerance"):
        verify([KEY], TIMESTAMP, EXPECTED, BODY, now=NOW - 301)


def test_tolerance_is_configurable() -> None:
    with pytest.raises(SignatureError, match="tolerance"):
        verify([KEY], TIMESTAMP, EXPECTED, BODY, now=NOW + 11, tolerance=10)


def test_rotated_keys_accept_old_and_new() -> None:
    old, new = b"old-key", b"new-key"
    keys = [old, new]
    for key in keys:
        signature = sign(key, TIMESTAMP, BODY)
        assert verify(keys, TIMESTAMP, signature, BODY, now=NOW) == int(TIMESTAMP)
    with pytest.raises(SignatureError):
        verify([new], TIMESTAMP, sign(old, TIMESTAMP, BODY), BODY, now=NOW)


def test_body_changed_by_one_byte_fails() -> None:
    for index in (0, len(BODY) // 2, len(BODY) - 1):
        changed = bytearray(BODY)
        changed[index] ^= 0x01
        with pytest.raises(SignatureError, match="mismatch"):
            verify([KEY], TIMESTAMP, EXPECTED, bytes(changed), now=NOW)
    with pytest.raises(SignatureError, match="mismatch"):
        verify([KEY], TIMESTAMP, EXPECTED, BODY + b" ", now=NOW)


def test_the_timestamp_is_part_of_what_is_signed() -> None:
    with pytest.raises(SignatureError, match="mismatch"):
        verify([KEY], "1700000001", EXPECTED, BODY, now=NOW)


def test_no_keys_verifies_nothing() -> None:
    with pytest.raises(SignatureError):
        verify([], TIMESTAMP, EXPECTED, BODY, now=NOW)


def test_error_messages_never_contain_the_key() -> None:
    with pytest.raises(SignatureError) as caught:
        verify([KEY], TIMESTAMP, "0" * 64, BODY, now=NOW)
    assert KEY.decode() not in str(caught.value) and KEY.decode() not in repr(caught.value)


# --- check_headers: what can be refused before the body is read ---------------------------------


def test_check_headers_returns_the_timestamp_of_well_formed_fresh_headers() -> None:
    assert check_headers(TIMESTAMP, EXPECTED, now=NOW + 300) == int(TIMESTAMP)
    assert check_headers(TIMESTAMP, EXPECTED.upper(), now=NOW - 300) == int(TIMESTAMP)


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        (None, EXPECTED, "missing"),
        (TIMESTAMP, None, "missing"),
        ("", "", "missing"),
        ("17e8", EXPECTED, "malformed timestamp"),
        (FULL_WIDTH_DIGITS, EXPECTED, "malformed timestamp"),
        ("1" * 13, EXPECTED, "malformed timestamp"),
        ("1" * 5_000, EXPECTED, "malformed timestamp"),
        (TIMESTAMP, "z" * 64, "malformed signature"),
        (TIMESTAMP, EXPECTED[:-1], "malformed signature"),
        ("1699999699", EXPECTED, "tolerance"),
        ("1700000301", EXPECTED, "tolerance"),
    ],
)
def test_check_headers_refuses_each_failure_that_needs_no_body(
    timestamp: str | None, signature: str | None, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason):
        check_headers(timestamp, signature, now=NOW)
    with pytest.raises(SignatureError, match=reason):  # verify starts with the same check
        verify([KEY], timestamp, signature, BODY, now=NOW)


def test_check_headers_passes_what_only_the_hmac_refuses() -> None:
    """A fresh, well-formed forgery passes the header check: the body decides."""
    forged = sign(b"another-key", TIMESTAMP, BODY)
    assert check_headers(TIMESTAMP, forged, now=NOW) == int(TIMESTAMP)
    with pytest.raises(SignatureError, match="mismatch"):
        verify([KEY], TIMESTAMP, forged, BODY, now=NOW)


def _now_for(timestamp: str | None) -> float:
    """A clock at the timestamp when it is numeric, so the check under test is the HMAC."""
    return float(timestamp) if timestamp and timestamp.isascii() and timestamp.isdigit() else NOW


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=512),
    timestamp=st.one_of(st.none(), st.text(max_size=14), st.integers(0, 10**11).map(str)),
    signature=st.one_of(
        st.none(), st.text(max_size=70), st.binary(min_size=32, max_size=32).map(bytes.hex)
    ),
    wrong_key=st.binary(min_size=1, max_size=64).filter(lambda k: k != KEY),
)
def test_property_nothing_verifies_without_the_right_key(
    body: bytes, timestamp: str | None, signature: str | None, wrong_key: bytes
) -> None:
    """Random headers, and a well-formed signature made with another key, never verify."""
    forged = None if timestamp is None else sign(wrong_key, timestamp, body)
    for candidate in (signature, forged):
        with pytest.raises(SignatureError):
            verify([KEY], timestamp, candidate, body, now=_now_for(timestamp))
