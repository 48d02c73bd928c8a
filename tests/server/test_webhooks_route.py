"""``POST /webhooks/customerio`` in the service: stored, counted, shown, to lake and handlers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from cio_relay.config import Settings
from cio_relay.outbox.base import Outbox
from cio_relay.server import create_app
from cio_relay.webhooks.events import parse_event
from cio_relay.webhooks.signature import signature_headers
from tests.server.conftest import serve

SIGNING_KEY = "whsec-test-0123456789"


def _event(metric: str, event_id: str, **data: Any) -> bytes:
    payload = {
        "event_id": event_id,
        "object_type": "email",
        "metric": metric,
        "timestamp": int(time.time()),
        "data": {"campaign_id": 7, "delivery_id": f"d-{event_id}", **data},
    }
    return orjson.dumps(payload)


@pytest.fixture
def app(settings: Settings, outbox: Outbox, tmp_path: Path) -> Starlette:
    with_keys = settings.model_copy(
        update={"webhook_signing_keys": [SecretStr(SIGNING_KEY)], "lake": str(tmp_path / "lake")}
    )
    return create_app(
        with_keys,
        outbox=outbox,
        run_workers=False,
        webhooks=True,
        idempotency_path=tmp_path / "i.db",
    )


@pytest.fixture
def url(app: Starlette) -> Iterator[str]:
    with serve(app) as base:
        yield base


def _post(url: str, body: bytes, key: str = SIGNING_KEY) -> httpx.Response:
    return httpx.post(
        f"{url}/webhooks/customerio", content=body, headers=signature_headers(key, body)
    )


def test_signed_webhooks_are_stored_once_and_counted(url: str, auth: dict[str, str]) -> None:
    body = _event("opened", "01HZZZZZZZZZZZZZZZZZZZZZZA", recipient="ada@example.com")
    assert _post(url, body).json() == {"status": "stored"}
    assert _post(url, body).json() == {"status": "duplicate"}
    forged = _post(url, _event("opened", "01HZZZZZZZZZZZZZZZZZZZZZZB"), key="wrong-key-0123")
    assert forged.status_code == 401
    metrics = httpx.get(f"{url}/metrics", headers=auth).text
    assert 'cio_relay_webhooks_total{metric="email_opened",result="stored"} 1.0' in metrics
    assert 'cio_relay_webhooks_total{metric="email_opened",result="duplicate"} 1.0' in metrics
    assert 'cio_relay_webhooks_total{metric="unknown",result="refused"} 1.0' in metrics
    page = httpx.get(f"{url}/dashboard/webhooks", headers=auth).text
    assert "ada@example.com" in page and "email_opened" in page
    assert 'id="inbox-pending"' in page or 'id="inbox-done"' in page


def test_every_other_answer_is_counted_by_its_result_without_a_label(
    settings: Settings, outbox: Outbox, tmp_path: Path, auth: dict[str, str]
) -> None:
    small = settings.model_copy(
        update={
            "webhook_signing_keys": [SecretStr(SIGNING_KEY)],
            "webhook_max_body": 1_000,
            "lake": str(tmp_path / "lake"),
        }
    )
    app = create_app(
        small, outbox=outbox, run_workers=False, webhooks=True, idempotency_path=tmp_path / "i.db"
    )
    # Authentic, but not an event: quarantined, and no name to label it by.
    unreadable = orjson.dumps({"object_type": "email", "metric": "opened"})
    big = _event("opened", "01HZZZZZZZZZZZZZZZZZZZZZZC", subject="x" * 2_000)
    with serve(app) as url:
        assert _post(url, unreadable).json() == {"status": "quarantined"}
        assert _post(url, big, key="someone-else").status_code == 401
        # Past webhook_max_body but authentic: stored as its fields, never refused for size.
        assert _post(url, big).json() == {"status": "stored", "truncated": True}
        metrics = httpx.get(f"{url}/metrics", headers=auth).text
        page = httpx.get(f"{url}/dashboard/webhooks", headers=auth).text
    assert 'cio_relay_webhooks_total{metric="unknown",result="quarantined"} 1.0' in metrics
    assert 'cio_relay_webhooks_total{metric="unknown",result="refused"} 1.0' in metrics
    assert 'cio_relay_webhooks_total{metric="email_opened",result="truncated"} 1.0' in metrics
    # The quarantined payload's row and the truncated event's: a 401 is not an answered webhook.
    assert page.count("<td>unknown</td><td></td><td>quarantined</td>") == 1
    assert page.count("<tr><td>") == 2


def test_unauthenticated_callers_cannot_invent_metric_labels(
    url: str, auth: dict[str, str]
) -> None:
    body = orjson.dumps({"event_id": "x", "object_type": "evil", "metric": "label_bomb_1"})
    assert httpx.post(f"{url}/webhooks/customerio", content=body).status_code == 401
    assert "label_bomb" not in httpx.get(f"{url}/metrics", headers=auth).text


def test_bounces_are_recorded_by_default_and_the_lake_feeds_the_funnel(
    app: Starlette, url: str, auth: dict[str, str], outbox: Outbox
) -> None:
    for n, metric in enumerate(("sent", "delivered", "opened", "sent", "bounced", "spammed")):
        extra = (
            {"identifiers": {"id": "u-9", "email": "bo@bounce.test"}}
            if metric in ("bounced", "spammed")
            else {}
        )
        body = _event(metric, f"01HZZZZZZZZZZZZZZZZZZZZZ{n:02d}", **extra)
        assert _post(url, body).status_code == 200
    app.state.service.webhooks.pipeline.drain()
    assert outbox.lease(10, 60) == []  # record: nobody is unsubscribed, let alone deleted
    page = httpx.get(f"{url}/dashboard", headers=auth).text
    assert "campaign 7" in page
    assert 'class="chart funnel"' in page


@pytest.mark.parametrize(
    ("bounce_policy", "spam_policy", "expected"),
    [
        ("record", "record", {}),
        ("suppress", "record", {"bounced": ("suppress", {"id": "u-1"}, {})}),
        (
            "record",
            "unsubscribe",
            {"spammed": ("identify", {"id": "u-2"}, {"unsubscribed": True})},
        ),
    ],
)
def test_each_policy_is_a_setting(
    settings: Settings,
    outbox: Outbox,
    tmp_path: Path,
    bounce_policy: str,
    spam_policy: str,
    expected: dict[str, tuple[str, dict[str, str], dict[str, Any]]],
) -> None:
    from cio_relay.observability.metrics import Metrics
    from cio_relay.relay import Relay
    from cio_relay.server.webhooks import WebhookStack

    configured = settings.model_copy(
        update={
            "webhook_signing_keys": [SecretStr(SIGNING_KEY)],
            "lake": str(tmp_path / "lake"),
            "bounce_policy": bounce_policy,
            "spam_policy": spam_policy,
        }
    )
    stack = WebhookStack.from_settings(configured, Relay(configured, outbox=outbox), Metrics())
    assert stack is not None
    try:
        router = stack.pipeline.router
        found: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {}
        for metric, person in (("bounced", "u-1"), ("spammed", "u-2")):
            event = parse_event(_event(metric, f"e-{metric}", customer_id=person))
            for handler in router.handlers_for(event):
                handler(event)
            leases = outbox.lease(10, 60)
            for lease in leases:
                attributes = dict(lease.op.payload.get("attributes", {}))
                attributes.pop("_env", None)
                found[metric] = (lease.op.kind.value, dict(lease.op.identifiers), attributes)
            outbox.ack(leases)
        assert found == expected
    finally:
        stack.stop()


def test_the_start_up_summary_says_which_policy_is_active(settings: Settings) -> None:
    from cio_relay.server.runner import delivery_health_line

    assert delivery_health_line(settings) == (
        "Bounces: record (CIO_RELAY_BOUNCE_POLICY), spam complaints: record (CIO_RELAY_SPAM_POLICY)"
    )
    suppressing = settings.model_copy(update={"bounce_policy": "suppress"})
    assert "suppress permanently deletes the person" in delivery_health_line(suppressing)
