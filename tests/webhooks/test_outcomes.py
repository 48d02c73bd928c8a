"""``on_outcome``: every answer of the receiver and the adapters is reported once, with the event
when there is one, and an observer that fails changes no answer."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cio_relay.webhooks.adapters import handle_webhook
from cio_relay.webhooks.events import parse_event
from cio_relay.webhooks.inbox import MemoryInbox
from cio_relay.webhooks.intake import Outcome, WebhookIntake
from cio_relay.webhooks.receiver import WebhookReceiver
from tests.webhooks.helpers import payload, signed

NOW = 1_700_000_000
PATH = "/webhooks/customerio"


@pytest.fixture
def inbox() -> Iterator[MemoryInbox]:
    memory = MemoryInbox()
    yield memory
    memory.close()


def _seen(outcomes: list[Outcome]) -> list[tuple[int, str, str | None]]:
    return [
        (o.reply.status, o.reply.result, o.event.event_id if o.event is not None else None)
        for o in outcomes
    ]


async def test_the_receiver_reports_every_answer_with_its_event(inbox: MemoryInbox) -> None:
    outcomes: list[Outcome] = []
    receiver = WebhookReceiver(
        inbox, ["k"], max_body=1_000, clock=lambda: float(NOW), on_outcome=outcomes.append
    )
    body = payload()
    event_id = parse_event(body).event_id
    big = payload(subject="x" * 2_000)
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answers = [
            await client.post(PATH, content=body, headers=signed(body, timestamp=NOW, key="k")),
            await client.post(PATH, content=body, headers=signed(body, timestamp=NOW, key="k")),
            await client.post(
                PATH, content=b"<x/>", headers=signed(b"<x/>", timestamp=NOW, key="k")
            ),
            await client.post(PATH, content=body, headers=signed(body, timestamp=NOW, key="bad")),
            await client.post(PATH, content=body),  # no signature headers: refused before reading
            await client.post(PATH, content=big, headers=signed(big, timestamp=NOW, key="k")),
            await client.get(PATH),
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 401, 401, 200, 405]
    assert _seen(outcomes) == [
        (200, "stored", event_id),
        (200, "duplicate", event_id),
        (200, "quarantined", None),
        (401, "refused", None),
        (401, "refused", None),
        (200, "truncated", parse_event(big).event_id),  # past max_body: never refused for size
        (405, "method_not_allowed", None),
    ]


def test_the_adapters_report_every_answer(inbox: MemoryInbox) -> None:
    outcomes: list[Outcome] = []
    intake = WebhookIntake(
        inbox, ["k"], max_body=1_000, clock=lambda: float(NOW), on_outcome=outcomes.append
    )
    body = payload()
    big = payload(subject="x" * 2_000)
    assert handle_webhook(intake, body, signed(body, timestamp=NOW, key="k"))[0] == 200
    assert handle_webhook(intake, big, signed(big, timestamp=NOW, key="k"))[0] == 200
    inbox.close()  # a closed inbox cannot store
    other = payload()
    assert handle_webhook(intake, other, signed(other, timestamp=NOW, key="k"))[0] == 503
    assert [(status, result) for status, result, _ in _seen(outcomes)] == [
        (200, "stored"),
        (200, "truncated"),
        (503, "unavailable"),
    ]
    assert outcomes[0].event is not None and outcomes[2].event is None


def test_a_failing_observer_changes_no_answer(
    inbox: MemoryInbox, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(outcome: Outcome) -> None:
        raise RuntimeError("a broken observer")

    intake = WebhookIntake(inbox, ["k"], clock=lambda: float(NOW), on_outcome=broken)
    body = payload()
    assert handle_webhook(intake, body, signed(body, timestamp=NOW, key="k")) == (
        200,
        b'{"status":"stored"}',
    )
    assert inbox.counts().pending == 1
    assert "on_outcome hook failed" in caplog.text
