"""Built-in handlers: bounce/spam policies (record by default), subscription changes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from cio_relay.errors import ConfigError
from cio_relay.webhooks.builtin import (
    DeliveryProblem,
    UnsubscribeRecord,
    install_builtin_handlers,
)
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


def test_by_default_bounces_and_spam_are_recorded_and_nobody_is_deleted(
    inbox: MemoryInbox, caplog: pytest.LogCaptureFixture
) -> None:
    problems: list[DeliveryProblem] = []
    acted: list[dict[str, str]] = []
    router = Router()
    installed = install_builtin_handlers(
        router,
        suppress=acted.append,  # given, and still never called: record is the default
        unsubscribe=acted.append,
        record_problem=problems.append,
        record_unsubscribes=False,
    )
    assert installed == ["email_bounced", "email_spammed"]
    with caplog.at_level(logging.INFO, logger="cio_relay.webhooks"):
        _deliver(
            inbox,
            router,
            payload("email", "bounced", identifiers={"id": "u1"}, delivery_id="d1"),
            payload("email", "spammed", customer_id="u2"),
        )
    assert acted == []
    assert [(p.name, p.identifiers, p.delivery_id) for p in problems] == [
        ("email_bounced", {"id": "u1"}, "d1"),
        ("email_spammed", {"id": "u2"}, None),
    ]
    assert "recorded (policy record)" in caplog.text and "u1" not in caplog.text
    assert inbox.counts().done == 2


def test_record_needs_no_callable() -> None:
    assert install_builtin_handlers(Router(), record_unsubscribes=False) == [
        "email_bounced",
        "email_spammed",
    ]


def test_the_suppress_policy_suppresses_the_person(inbox: MemoryInbox) -> None:
    suppressed: list[dict[str, str]] = []
    router = Router()
    install_builtin_handlers(
        router,
        bounce_policy="suppress",
        spam_policy="suppress",
        suppress=suppressed.append,
        record_unsubscribes=False,
    )
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


def test_the_unsubscribe_policy_unsubscribes_and_each_metric_has_its_own(
    inbox: MemoryInbox,
) -> None:
    unsubscribed: list[dict[str, str]] = []
    suppressed: list[dict[str, str]] = []
    router = Router()
    install_builtin_handlers(
        router,
        bounce_policy="unsubscribe",
        spam_policy="suppress",
        unsubscribe=unsubscribed.append,
        suppress=suppressed.append,
        record_unsubscribes=False,
    )
    _deliver(
        inbox,
        router,
        payload("email", "bounced", identifiers={"cio_id": "c1", "email": "b@x.test"}),
        payload("email", "spammed", customer_id="u2"),
    )
    assert unsubscribed == [{"cio_id": "c1"}] and suppressed == [{"id": "u2"}]


def test_a_bounce_without_identifiers_is_parked_for_an_operator(inbox: MemoryInbox) -> None:
    router = Router()
    install_builtin_handlers(
        router, bounce_policy="suppress", suppress=lambda ids: None, record_unsubscribes=False
    )
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
    install_builtin_handlers(
        router, spam_policy="suppress", suppress=suppress, record_unsubscribes=False
    )
    _deliver(inbox, router, payload("email", "spammed", customer_id="u1"))
    assert inbox.counts().pending == 1
    router.drain(inbox, now=T0 + 3600)
    assert calls == [{"id": "u1"}, {"id": "u1"}] and inbox.counts().done == 1


SUBSCRIPTION_CHANNELS = (
    "customer",
    "email",
    "sms",
    "push",
    "in_app",
    "slack",
    "webhook",
    "whatsapp",
)


def test_subscription_changes_from_every_channel_are_recorded(inbox: MemoryInbox) -> None:
    records: list[UnsubscribeRecord] = []
    router = Router()
    install_builtin_handlers(router, record_unsubscribe=records.append)
    bodies = [
        payload(channel, metric, customer_id=f"{channel}-{metric}")
        for channel in SUBSCRIPTION_CHANNELS
        for metric in ("subscribed", "unsubscribed", "cio_subscription_preferences_changed")
    ]
    _deliver(inbox, router, *bodies, payload("email", "opened", customer_id="u5"))
    assert len(records) == 3 * len(SUBSCRIPTION_CHANNELS)
    by_name = {r.name: r for r in records}
    assert by_name["email_subscribed"].unsubscribed is False
    assert by_name["sms_unsubscribed"].unsubscribed is True
    assert by_name["sms_unsubscribed"].channel == "sms"
    assert by_name["email_cio_subscription_preferences_changed"].unsubscribed is None
    assert by_name["whatsapp_unsubscribed"].identifiers == {"id": "whatsapp-unsubscribed"}


def test_subscription_changes_are_recorded_with_their_fields(inbox: MemoryInbox) -> None:
    records: list[UnsubscribeRecord] = []
    router = Router()
    install_builtin_handlers(router, record_unsubscribe=records.append)
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


def test_an_undocumented_channel_reaches_no_subscription_recorder(inbox: MemoryInbox) -> None:
    records: list[UnsubscribeRecord] = []
    router = Router()
    install_builtin_handlers(router, record_unsubscribe=records.append)
    _deliver(inbox, router, payload("carrier_pigeon", "unsubscribed", customer_id="u1"))
    assert records == [] and inbox.counts().done == 1


def test_a_chosen_policy_without_its_callable_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="CIO_RELAY_BOUNCE_POLICY=suppress"):
        install_builtin_handlers(Router(), bounce_policy="suppress", record_unsubscribes=False)
    with pytest.raises(ConfigError, match="CIO_RELAY_SPAM_POLICY=unsubscribe"):
        install_builtin_handlers(Router(), spam_policy="unsubscribe", record_unsubscribes=False)
    with pytest.raises(ConfigError, match="record_unsubscribe"):
        install_builtin_handlers(Router())


def test_the_policies_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from cio_relay.config import Settings
    from cio_relay.webhooks.builtin import builtin_options

    assert builtin_options(Settings())["bounce_policy"] == "record"
    assert builtin_options(Settings())["spam_policy"] == "record"
    monkeypatch.setenv("CIO_RELAY_BOUNCE_POLICY", "Suppress")
    monkeypatch.setenv("CIO_RELAY_SPAM_POLICY", "unsubscribe")
    options = builtin_options(Settings())
    assert options == {
        "bounce_policy": "suppress",
        "spam_policy": "unsubscribe",
        "record_unsubscribes": True,
    }


@pytest.mark.parametrize("setting", ["CIO_RELAY_BOUNCE_POLICY", "CIO_RELAY_SPAM_POLICY"])
def test_a_bad_policy_is_a_configuration_error_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    from cio_relay.config import Settings

    monkeypatch.setenv(setting, "delete")
    with pytest.raises(ConfigError, match=f"{setting}: 'delete' is not a policy"):
        Settings()
