"""Two-way preferences: subscription webhooks update the local preference state, enqueueing
nothing; per field the latest timestamp wins and a tie goes to the webhook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cio_relay.config import Settings
from cio_relay.errors import OutboxFullError
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.relay import Relay
from cio_relay.sync import (
    PREFERENCE_PATTERNS,
    AsyncUserRepository,
    PreferenceStamp,
    SqliteUserStore,
    UserRepository,
    preference_handler,
)
from cio_relay.sync.sqlite_store import SCHEMA_NAME, STEPS
from cio_relay.webhooks.builtin import install_builtin_handlers
from cio_relay.webhooks.events import Event, parse_event
from cio_relay.webhooks.inbox import MemoryInbox
from cio_relay.webhooks.pipeline import WebhookPipeline
from cio_relay.webhooks.receiver import WebhookReceiver
from cio_relay.webhooks.router import Router
from cio_relay.webhooks.sqlite_inbox import SQLiteInbox
from tests.sync.conftest import take_all
from tests.sync.test_repository import full_relay
from tests.webhooks.helpers import KEY, event_id, payload, signed

T0 = 1_700_000_000


def subscription(metric: str, person: str, at: float, channel: str = "email") -> Event:
    ids = {"id": person}
    return parse_event(payload(channel, metric, timestamp=at, customer_id=person, identifiers=ids))


def preferences_changed_body(person: str, at: float, topics: dict[str, Any]) -> bytes:
    """As reporting-webhooks.json documents it: the channel in ``object_type_type`` and the
    topics as a stringified object in ``data.content``."""
    return orjson.dumps(
        {
            "event_id": event_id(),
            "metric": "cio_subscription_preferences_changed",
            "object_type_type": "email",
            "timestamp": at,
            "data": {
                "customer_id": person,
                "email_address": f"{person}@example.com",
                "identifiers": {"id": person},
                "content": orjson.dumps({"topics": topics}).decode(),
            },
        }
    )


def test_an_unsubscribed_webhook_marks_the_person(users: UserRepository, relay: Relay) -> None:
    state = users.apply_subscription_event(subscription("unsubscribed", "u1", T0, "sms"))
    assert state is not None and state.unsubscribed is True
    stored = users.get("u1")
    assert stored is not None and stored.unsubscribed is True
    assert stored.preference_times == {"unsubscribed": PreferenceStamp(T0, "webhook")}
    users.apply_subscription_event(subscription("subscribed", "u1", T0 + 1, "customer"))
    again = users.get("u1")
    assert again is not None and again.unsubscribed is False
    assert take_all(relay.outbox) == []


def test_a_preferences_changed_webhook_sets_topics(users: UserRepository, relay: Relay) -> None:
    users.update_preferences("u1", topics={3: True})
    take_all(relay.outbox)
    body = preferences_changed_body("u1", T0, {"topic_1": True, "topic_2": False, "bad": 1})
    users.apply_subscription_event(parse_event(body))
    state = users.get("u1")
    assert state is not None
    assert state.topics == {"topic_1": True, "topic_2": False, "topic_3": True}
    assert state.unsubscribed is None  # a topics change says nothing of the global flag
    assert state.preference_times["topic_1"] == PreferenceStamp(T0, "webhook")
    assert state.preference_times["topic_3"].source == "app"
    assert take_all(relay.outbox) == []


def test_an_older_webhook_does_not_overwrite_a_newer_app_change_and_a_newer_one_does(
    users: UserRepository, relay: Relay
) -> None:
    users.update_preferences("u1", topics={1: True}, unsubscribed=False)
    state = users.get("u1")
    assert state is not None
    app_at = state.preference_times["unsubscribed"].at
    assert state.preference_times["topic_1"] == PreferenceStamp(app_at, "app")
    take_all(relay.outbox)

    older = subscription("unsubscribed", "u1", app_at - 1)
    assert users.apply_subscription_event(older) is None
    kept = users.get("u1")
    assert kept is not None and kept.unsubscribed is False
    assert kept.preference_times["unsubscribed"] == PreferenceStamp(app_at, "app")

    # Per field: the older webhook's topic_1 loses, its topic_2 (never set) is taken.
    topics = preferences_changed_body("u1", app_at - 1, {"topic_1": False, "topic_2": True})
    users.apply_subscription_event(parse_event(topics))
    mixed = users.get("u1")
    assert mixed is not None and mixed.topics == {"topic_1": True, "topic_2": True}

    newer = subscription("unsubscribed", "u1", app_at + 1)
    users.apply_subscription_event(newer)
    taken = users.get("u1")
    assert taken is not None and taken.unsubscribed is True
    assert taken.preference_times["unsubscribed"] == PreferenceStamp(app_at + 1, "webhook")
    assert take_all(relay.outbox) == []


def test_a_tie_goes_to_the_webhook(users: UserRepository) -> None:
    users.update_preferences("u1", unsubscribed=False)
    state = users.get("u1")
    assert state is not None
    users.apply_subscription_event(
        subscription("unsubscribed", "u1", state.preference_times["unsubscribed"].at)
    )
    tied = users.get("u1")
    assert tied is not None and tied.unsubscribed is True


def test_a_webhook_for_an_unknown_person_creates_state_without_enqueueing(
    users: UserRepository, relay: Relay
) -> None:
    assert users.get("stranger") is None
    users.apply_subscription_event(subscription("unsubscribed", "stranger", T0))
    state = users.get("stranger")
    assert state is not None and state.unsubscribed is True and state.attributes == {}
    assert take_all(relay.outbox) == []
    # The person's first sync_user still sends their attributes.
    assert users.sync_user("stranger", {"plan": "pro"}) is not None


def test_events_that_are_not_subscription_changes_change_nothing(users: UserRepository) -> None:
    delivered = parse_event(payload("email", "delivered", customer_id="u1"))
    no_id = parse_event(payload("email", "unsubscribed", email_address="a@example.com"))
    assert users.apply_subscription_event(delivered) is None
    assert users.apply_subscription_event(no_id) is None
    assert users.get("u1") is None


async def test_a_signed_webhook_round_trips_through_the_receiver_to_the_sqlite_store(
    tmp_path: Path,
) -> None:
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    relay = Relay(Settings(stamp_env=False), outbox=outbox)
    users = UserRepository(relay)
    assert isinstance(users.store, SqliteUserStore)
    router = Router()
    handler = preference_handler(users)
    for pattern in PREFERENCE_PATTERNS:
        router.on(pattern)(handler)
    with SQLiteInbox(tmp_path / "webhooks.db") as inbox:
        receiver = WebhookReceiver(inbox, [KEY], clock=lambda: float(T0))
        bodies = [
            payload("email", "unsubscribed", timestamp=T0, customer_id="u1"),
            preferences_changed_body("u1", T0, {"topic_4": False}),
        ]
        transport = httpx.ASGITransport(app=receiver)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for body in bodies:
                response = await client.post(
                    "/webhooks/customerio", content=body, headers=signed(body, timestamp=T0)
                )
                assert response.status_code == 200
        report = WebhookPipeline(inbox, router).drain(now=T0)
    assert report.handlers.done == 2
    outbox.close()
    reopened = SqliteOutbox(tmp_path / "outbox.db")
    state = UserRepository(reopened).get("u1")
    assert state is not None and state.unsubscribed is True and state.topics == {"topic_4": False}
    assert state.preference_times == {
        "unsubscribed": PreferenceStamp(T0, "webhook"),
        "topic_4": PreferenceStamp(T0, "webhook"),
    }
    assert take_all(reopened) == []
    reopened.close()


def test_a_version_1_sync_schema_is_upgraded_keeping_its_people(tmp_path: Path) -> None:
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    outbox.database.add_schema(SCHEMA_NAME, {1: STEPS[1]})
    outbox.database.write(
        lambda conn: conn.execute(
            "INSERT INTO sync_people VALUES ('u1', 'h', '{}', '{\"topic_1\":true}', 1, 5.0)"
        )
    )
    state = SqliteUserStore(outbox).get("u1")
    assert state is not None and state.topics == {"topic_1": True} and state.unsubscribed
    assert state.preference_times == {}
    outbox.close()


def test_the_builtin_handlers_apply_preferences_when_given_a_handler(
    users: UserRepository, relay: Relay
) -> None:
    router = Router()
    installed = install_builtin_handlers(
        router, record_unsubscribes=False, on_subscription_change=preference_handler(users)
    )
    assert set(PREFERENCE_PATTERNS) <= set(installed)
    inbox = MemoryInbox()
    for raw in (
        payload("push", "unsubscribed", timestamp=T0, customer_id="u1"),
        preferences_changed_body("u1", T0, {"topic_9": True}),
    ):
        inbox.store(parse_event(raw), raw, received_at=T0)
    assert WebhookPipeline(inbox, router).drain(now=T0).handlers.done == 2
    state = users.get("u1")
    assert state is not None and state.unsubscribed is True and state.topics == {"topic_9": True}
    assert take_all(relay.outbox) == []


async def test_the_async_repository_applies_subscription_events(relay: Relay) -> None:
    users = AsyncUserRepository(relay)
    state = await users.apply_subscription_event(subscription("unsubscribed", "u1", T0))
    assert state is not None and state.unsubscribed is True
    stored = await users.get("u1")
    assert stored == state
    assert take_all(relay.outbox) == []


def test_a_full_outbox_still_takes_subscription_webhooks(users: UserRepository) -> None:
    # The relay refuses writes past its depth; a webhook's change enqueues nothing, so it applies.
    full = UserRepository(full_relay(users.store.outbox), users.store)
    with pytest.raises(OutboxFullError):
        full.update_preferences("u1", unsubscribed=False)
    state = full.apply_subscription_event(subscription("unsubscribed", "u1", T0))
    assert state is not None and state.unsubscribed is True
