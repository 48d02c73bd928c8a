"""Built-in handlers: suppress on hard bounce or spam, record subscription changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from cio_relay.errors import ConfigError
from cio_relay.webhooks.builtin import UnsubscribeRecord, install_builtin_handlers
from cio_relay.webhooks.events import parse_event
from cio_relay.webhooks.inbox import MemoryInbox
from cio_relay.webhooks.router import Router
from tests.webhooks.helpers import payload

T0 = 1_700_000_000.0


@pytest.fixture
def inbox() -> Iterator[MemoryInbox]:
    memory = MemoryInbox()
    yield memory
    memory.close()


def _deliver(inbox: MemoryInbox, router: Router, *bodies: bytes) -> None:
    for raw in bodies:
        inbox.store(parse_event(raw), raw, received_at=T0)
    router.drain(inbox, now=T0)


def test_hard_bounces_and_spam_complaints_suppress_the_person(inbox: MemoryInbox) -> None:
    suppressed: list[dict[str, str]] = []
    router = Router()
    install_builtin_handlers(router, suppress=suppressed.append, record_unsubscribes=False)
    _deliver(
        inbox,
        router,
        payload("email", "bounced", identifiers={"id": "u1", "email": "u1@bounce.test"}),
        payload("email", "spammed", customer_id="u2"),
        payload("email", "opened", customer_id="u3"),
        payload("sms", "bounced", customer_id="u4"),  # only email bounces are hard bounces
        payload("email", "bounced", email_address="u5@bounce.test"),
    )
    assert suppressed == [  # one identifier each, the most stable the event carries
        {"id": "u1"},
        {"id": "u2"},
        {"email": "u5@bounce.test"},
    ]
    assert inbox.counts().done == 5


def test_a_bounce_without_identifiers_is_parked_for_an_operator(inbox: MemoryInbox) -> None:
    router = Router()
    install_builtin_handlers(router, suppress=lambda ids: None, record_unsubscribes=False)
    _deliver(inbox, router, payload("email", "bounced", delivery_id="d1"))
    [parked] = inbox.list_parked()
    assert "no person identifiers to suppress" in (parked.last_error or "")


def test_a_failing_suppress_call_is_retried_not_lost(inbox: MemoryInbox) -> None:
    calls: list[dict[str, str]] = []

    def suppress(identifiers: dict[str, str]) -> None:
        calls.append(identifiers)
        if len(calls) == 1:
            raise ConnectionError("outbox unavailable")

    router = Router()
    install_builtin_handlers(router, suppress=suppress, record_unsubscribes=False)
    _deliver(inbox, router, payload("email", "spammed", customer_id="u1"))
    assert inbox.counts().pending == 1
    router.drain(inbox, now=T0 + 3600)
    assert calls == [{"id": "u1"}, {"id": "u1"}] and inbox.counts().done == 1


def test_each_suppression_is_a_setting(inbox: MemoryInbox) -> None:
    suppressed: list[dict[str, str]] = []
    router = Router()
    installed = install_builtin_handlers(
        router, suppress=suppressed.append, suppress_on_bounce=False, record_unsubscribes=False
    )
    assert installed == ["email_spammed"]
    _deliver(inbox, router, payload("email", "bounced", customer_id="u1"))
    assert suppressed == []


def test_subscription_changes_are_recorded(inbox: MemoryInbox) -> None:
    records: list[UnsubscribeRecord] = []
    router = Router()
    install_builtin_handlers(
        router, record_unsubscribe=records.append, suppress_on_bounce=False, suppress_on_spam=False
    )
    _deliver(
        inbox,
        router,
        payload("customer", "unsubscribed", customer_id="u1", timestamp=T0),
        payload("email", "unsubscribed", customer_id="u2", delivery_id="d2"),
        payload("customer", "subscribed", identifiers={"email": "u3@example.com"}),
        payload(
            "customer",
            "cio_subscription_preferences_changed",
            customer_id="u4",
            content='{"topics":{"topic_1":false}}',
        ),
        payload("email", "opened", customer_id="u5"),
    )
    assert [(r.name, r.identifiers, r.unsubscribed) for r in records] == [
        ("customer_unsubscribed", {"id": "u1"}, True),
        ("email_unsubscribed", {"id": "u2"}, True),
        ("customer_subscribed", {"email": "u3@example.com"}, False),
        ("customer_cio_subscription_preferences_changed", {"id": "u4"}, None),
    ]
    assert records[0].occurred_at == datetime.fromtimestamp(T0, UTC)
    assert records[1].delivery_id == "d2"
    assert records[3].data["content"] == '{"topics":{"topic_1":false}}'


def test_enabled_builtins_without_their_callable_are_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="suppress"):
        install_builtin_handlers(Router(), record_unsubscribe=lambda r: None)
    with pytest.raises(ConfigError, match="record_unsubscribe"):
        install_builtin_handlers(Router(), suppress=lambda ids: None)
    assert (
        install_builtin_handlers(
            Router(), suppress_on_bounce=False, suppress_on_spam=False, record_unsubscribes=False
        )
        == []
    )


def test_the_flags_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from cio_relay.config import Settings
    from cio_relay.webhooks.builtin import builtin_flags

    monkeypatch.setenv("CIO_RELAY_WEBHOOK_SUPPRESS_ON_BOUNCE", "false")
    flags = builtin_flags(Settings())
    assert flags == {
        "suppress_on_bounce": False,
        "suppress_on_spam": True,
        "record_unsubscribes": True,
    }
    installed = install_builtin_handlers(
        Router(), suppress=lambda ids: None, record_unsubscribe=lambda r: None, **flags
    )
    assert "email_bounced" not in installed and "email_spammed" in installed
