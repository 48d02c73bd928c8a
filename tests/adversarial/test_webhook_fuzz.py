"""The webhook route under arbitrary requests: never a 5xx, nothing stored unless authentic,
and an authentic event stored once however often it comes (issue 11, design.md contract 8).

The service's own route (``/webhooks/customerio``: the observed receiver, the intake, the
SQLite inbox) is driven in process through ``httpx.ASGITransport``. Hypothesis makes the
requests: bodies that are events, other JSON, or arbitrary bytes; timestamps that are fresh,
stale, in the future, Unicode digits, thousands of digits or missing; signatures that are right
for the body, right for another body, made with another key, malformed or missing. Properties:

- the answer is 200 or 401, nothing else (a body past the cap is stored truncated, never 413);
- it is 200 exactly when the signature is right for these bytes and the timestamp is fresh,
  401 otherwise, and a 401 stores nothing;
- an authentic request stores at most one new row (an event, or a quarantined payload that did
  not parse), and sending it again stores nothing more.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from cio_relay.config import Settings
from cio_relay.server import create_app
from cio_relay.webhooks.signature import sign

SIGNING_KEY = "whsec-webhook-fuzz-0123456789"
OTHER_KEY = "whsec-someone-else-0123456789"
MAX_BODY = 20_000
TOLERANCE = 300
PATH = "/webhooks/customerio"


def _json(value: object) -> bytes:
    # The standard library's: it writes any integer (and Infinity), as a sender might.
    return json.dumps(value).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
events = st.fixed_dictionaries(
    {
        "event_id": st.one_of(st.text(min_size=1, max_size=30), st.integers(), st.none()),
        "object_type": st.sampled_from(["email", "sms", "push", "customer", "", "x" * 300]),
        "metric": st.sampled_from(["delivered", "bounced", "opened", "subscribed", "odd"]),
        "timestamp": st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False)),
    },
    optional={"data": st.dictionaries(st.text(max_size=10), json_values, max_size=5)},
).map(_json)
bodies = st.one_of(
    events,
    json_values.map(_json),
    st.binary(max_size=300),
    st.integers(MAX_BODY - 10, MAX_BODY + 10).map(lambda size: b"x" * size),
)
#: Ways to get the timestamp header wrong (or right): seconds from now, or a fixed text.
timestamps = st.one_of(
    st.just(0),
    st.integers(-TOLERANCE + 5, TOLERANCE - 5),
    st.sampled_from([-TOLERANCE - 60, TOLERANCE + 60, -(10**6), 10**6]),
    st.sampled_from(
        ["", "\u0661\u0667" + "\u0660" * 8, "²", "1" * 5000, "-1", "1e9", " 1700000000", None]
    ),
)
signatures = st.sampled_from(
    ["right", "other_body", "other_key", "upper", "bad_hex", "short", None]
)


@pytest.fixture
def app(tmp_path: Path) -> Any:
    app_settings = Settings(
        api_keys="fuzz-" + "0123456789abcdef" * 2,
        data_dir=tmp_path,
        outbox="memory://",
        lake=str(tmp_path / "lake"),
        webhook_signing_keys=[SecretStr(SIGNING_KEY)],
        webhook_tolerance=TOLERANCE,
        webhook_max_body=MAX_BODY,
    )
    return create_app(
        app_settings, run_workers=False, webhooks=True, idempotency_path=tmp_path / "i.db"
    )


def _headers(body: bytes, timestamp: int | str | None, signature: str | None) -> dict[str, bytes]:
    """The request's headers; values as UTF-8 bytes, as a client may send any bytes."""
    headers = {"Content-Type": b"application/json"}
    stamp = str(int(time.time()) + timestamp) if isinstance(timestamp, int) else timestamp
    if stamp is not None:
        headers["X-CIO-Timestamp"] = stamp.encode()
    if signature is not None:
        signed_stamp = stamp or "0"
        headers["X-CIO-Signature"] = {
            "right": sign(SIGNING_KEY, signed_stamp, body),
            "other_body": sign(SIGNING_KEY, signed_stamp, body + b" "),
            "other_key": sign(OTHER_KEY, signed_stamp, body),
            "upper": sign(SIGNING_KEY, signed_stamp, body).upper(),
            "bad_hex": "z" * 64,
            "short": sign(SIGNING_KEY, signed_stamp, body)[:40],
        }[signature].encode()
    return headers


def _authentic(body: bytes, timestamp: int | str | None, signature: str | None) -> bool:
    return (
        signature in ("right", "upper")
        and isinstance(timestamp, int)
        and abs(timestamp) < TOLERANCE
    )


def _stored(app: Any) -> int:
    counts = app.state.service.webhooks.inbox.counts()
    return int(counts.pending + counts.done + counts.parked + counts.quarantined)


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as client:
        yield client
    app.state.service.webhooks.inbox.close()


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, timestamp=timestamps, signature=signatures)
async def test_any_request_is_answered_200_or_401_and_only_authentic_ones_are_stored(
    http: httpx.AsyncClient,
    app: Any,
    body: bytes,
    timestamp: int | str | None,
    signature: str | None,
) -> None:
    headers = _headers(body, timestamp, signature)
    before = _stored(app)
    first = await http.post(PATH, content=body, headers=headers)
    after_first = _stored(app)
    again = await http.post(PATH, content=body, headers=headers)
    assert first.status_code in (200, 401), first.text
    assert again.status_code == first.status_code
    if _authentic(body, timestamp, signature):
        assert first.status_code == 200, (headers, first.text)
        assert after_first - before <= 1
    else:
        assert first.status_code == 401 and first.content == again.content
        assert after_first == before
    assert _stored(app) == after_first  # the same request again stores nothing more
