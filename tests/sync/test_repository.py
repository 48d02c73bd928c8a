"""``UserRepository`` on the memory and SQLite outboxes: what each call enqueues and records."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from cio_relay.config import Settings
from cio_relay.errors import ConfigError, LimitExceeded, OutboxFullError, ValidationError
from cio_relay.operations import Kind
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.relay import Relay
from cio_relay.sync import AsyncUserRepository, MemoryUserStore, UserRepository, user_store_for
from cio_relay.sync.plans import PREFERENCES_PREFIX
from tests.contract.openapi import document
from tests.sync.conftest import open_outbox, take_all


def test_first_sync_sends_every_attribute(users: UserRepository, relay: Relay) -> None:
    op_id = users.sync_user("u1", {"email": "a@x.test", "plan": "pro"})
    [op] = take_all(relay.outbox)
    assert op.op_id == op_id and op.kind is Kind.IDENTIFY
    assert op.payload["attributes"] == {"email": "a@x.test", "plan": "pro"}
    state = users.get("u1")
    assert state is not None and state.attributes == {"email": "a@x.test", "plan": "pro"}


def test_unchanged_sync_sends_nothing(users: UserRepository, relay: Relay) -> None:
    users.sync_user("u1", {"plan": "pro", "seats": {"max": 3, "used": 1}})
    take_all(relay.outbox)
    # Same attributes, keys in another order: the canonical hash is equal.
    assert users.sync_user("u1", {"seats": {"used": 1, "max": 3}, "plan": "pro"}) is None
    assert take_all(relay.outbox) == []


def test_changed_sync_sends_only_the_changed_and_new_keys(
    users: UserRepository, relay: Relay
) -> None:
    users.sync_user("u1", {"email": "a@x.test", "plan": "pro", "seats": 3})
    take_all(relay.outbox)
    users.sync_user("u1", {"email": "a@x.test", "plan": "team", "seats": 3, "city": "Oslo"})
    [op] = take_all(relay.outbox)
    assert op.payload["attributes"] == {"plan": "team", "city": "Oslo"}


def test_removed_key_is_cleared_with_an_empty_string(users: UserRepository, relay: Relay) -> None:
    users.sync_user("u1", {"email": "a@x.test", "plan": "pro", "coupon": "X1"})
    take_all(relay.outbox)
    users.sync_user("u1", {"email": "a@x.test", "plan": "pro", "coupon": None})
    [op] = take_all(relay.outbox)
    assert op.payload["attributes"] == {"coupon": ""}
    state = users.get("u1")
    assert state is not None and "coupon" not in state.attributes


def test_empty_string_removes_as_track_api_documents() -> None:
    # The document names null or "" as what removes an attribute (object attributes).
    schemas = document("track-api.json")["components"]["schemas"]
    assert "empty string to remove an attribute" in schemas["object_attributes"]["description"]


def test_past_300_keys_the_identify_is_split_in_order(users: UserRepository, relay: Relay) -> None:
    users.sync_user("u1", {f"a{n}": n for n in range(250)})
    take_all(relay.outbox)
    last = users.sync_user("u1", {f"b{n}": n for n in range(250)})
    ops = take_all(relay.outbox)
    assert [op.kind for op in ops] == [Kind.IDENTIFY, Kind.IDENTIFY]
    assert last == ops[-1].op_id
    sent = {k: v for op in ops for k, v in op.payload["attributes"].items()}
    assert sent == {**{f"b{n}": n for n in range(250)}, **{f"a{n}": "" for n in range(250)}}


def test_preferences_use_the_documented_subscription_attributes(
    users: UserRepository, relay: Relay
) -> None:
    users.update_preferences("u1", topics={7: False, "topic_8": True}, unsubscribed=False)
    [op] = take_all(relay.outbox)
    assert op.kind is Kind.IDENTIFY
    assert op.payload["attributes"] == {
        "cio_subscription_preferences.topics.topic_7": False,
        "cio_subscription_preferences.topics.topic_8": True,
        "unsubscribed": False,
    }
    state = users.get("u1")
    assert state is not None
    assert state.topics == {"topic_7": False, "topic_8": True} and state.unsubscribed is False
    users.update_preferences("u1", topics={7: True})
    state = users.get("u1")
    assert state is not None
    assert state.topics == {"topic_7": True, "topic_8": True} and state.unsubscribed is False


def test_preference_attributes_are_those_of_track_api() -> None:
    track_api = document("track-api.json")
    preferences = track_api["components"]["schemas"]["cio_subscription_preferences"]
    assert PREFERENCES_PREFIX + "topic_<id>" in preferences["description"]
    assert "topics" in preferences["properties"]
    # The global opt-out is the boolean attribute ``unsubscribed`` of an identify.
    unsubscribed = {"type": "boolean", "description": "If true, a person is unsubscribed from all"}
    assert json.dumps(unsubscribed)[:-2] in json.dumps(track_api)


def test_preferences_refuse_what_customerio_would_not_read(users: UserRepository) -> None:
    with pytest.raises(ValidationError, match="topics"):
        users.update_preferences("u1", topics={"newsletter": False})
    with pytest.raises(ValidationError, match="topics"):
        users.update_preferences("u1")
    with pytest.raises(ValidationError, match="unsubscribed"):
        users.update_preferences("u1", unsubscribed="yes")  # type: ignore[arg-type]
    assert users.get("u1") is None


def test_delete_suppresses_then_deletes_and_forgets(users: UserRepository, relay: Relay) -> None:
    users.sync_user("u1", {"email": "a@x.test"})
    take_all(relay.outbox)
    suppress_id, delete_id = users.delete_user("u1")
    ops = take_all(relay.outbox)
    assert [(op.kind, op.op_id) for op in ops] == [
        (Kind.SUPPRESS, suppress_id),
        (Kind.DELETE, delete_id),
    ]
    assert users.get("u1") is None


def test_a_limit_breach_records_nothing(users: UserRepository, relay: Relay) -> None:
    users.sync_user("u1", {"plan": "pro"})
    take_all(relay.outbox)
    with pytest.raises(LimitExceeded):
        users.sync_user("u1", {"plan": "pro", "bio": "x" * 2000})
    assert take_all(relay.outbox) == []
    state = users.get("u1")
    assert state is not None and state.attributes == {"plan": "pro"}


def test_hooks_hear_each_operation(users: UserRepository, relay: Relay) -> None:
    seen: list[str] = []
    relay.hooks.on_enqueued(lambda op: seen.append(op.op_id))
    assert seen == [users.sync_user("u1", {"plan": "pro"}), *users.delete_user("u1")]


def test_sync_user_op_ids_names_every_identify_of_a_split_sync(
    users: UserRepository, relay: Relay
) -> None:
    users.sync_user("u1", {f"a{n}": n for n in range(250)})
    take_all(relay.outbox)
    op_ids = users.sync_user_op_ids("u1", {f"b{n}": n for n in range(250)})
    assert op_ids == [op.op_id for op in take_all(relay.outbox)] and len(op_ids) == 2
    assert users.sync_user_op_ids("u1", {f"b{n}": n for n in range(250)}) == []


def full_relay(outbox: Outbox) -> Relay:
    """A relay whose outbox already holds its maximum depth (1), the depth freshly read."""
    relay = Relay(Settings(stamp_env=False, outbox_max_depth=1), outbox=outbox)
    relay.track("someone", "filler")
    relay.guarded_outbox._backpressure._checked_at = 0.0  # a fresh look, not the 1 s cache
    return relay


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_full_outbox_refuses_every_write_as_the_relay_does(kind: str, tmp_path: Path) -> None:
    outbox = open_outbox(kind, tmp_path)
    try:
        relay = full_relay(outbox)
        users = UserRepository(relay)
        message = "outbox depth 1 is past the maximum of 1; retry later"
        with pytest.raises(OutboxFullError, match=message):
            relay.track("u1", "e")
        with pytest.raises(OutboxFullError, match=message):
            users.sync_user("u1", {"plan": "pro"})
        with pytest.raises(OutboxFullError, match=message):
            users.update_preferences("u1", unsubscribed=True)
        with pytest.raises(OutboxFullError, match=message):
            users.delete_user("u1")
        assert users.get("u1") is None
        assert outbox.depth().pending == 1
    finally:
        outbox.close()


async def test_a_full_outbox_refuses_the_async_repository_too(tmp_path: Path) -> None:
    outbox = open_outbox("sqlite", tmp_path)
    try:
        users = AsyncUserRepository(full_relay(outbox))
        with pytest.raises(OutboxFullError):
            await users.sync_user("u1", {"plan": "pro"})
        assert await users.get("u1") is None
    finally:
        outbox.close()


def test_people_named_by_email_or_cio_id_are_kept_apart_from_ids(
    users: UserRepository, relay: Relay
) -> None:
    users.sync_user({"email": "bob@x.test"}, {"plan": "free"})
    users.sync_user({"cio_id": "a1b2"}, {"plan": "team"})
    users.sync_user({"id": "u1"}, {"plan": "pro"})
    sent = {op.person_key: op.payload["attributes"] for op in take_all(relay.outbox)}
    assert sent == {
        "email:bob@x.test": {"plan": "free"},
        "cio_id:a1b2": {"plan": "team"},
        "id:u1": {"plan": "pro"},  # the operation's ordering key, not the store's
    }
    assert users.sync_user({"email": "bob@x.test"}, {"plan": "free"}) is None
    by_email = users.get({"email": "bob@x.test"})
    assert by_email is not None and by_email.person_id == "email:bob@x.test"
    cio = users.get({"cio_id": "a1b2"})
    assert cio is not None and cio.attributes == {"plan": "team"}
    assert users.get("u1") == users.get({"id": "u1"}) is not None
    assert users.get("bob@x.test") is None  # an id is not an email
    users.update_preferences({"email": "bob@x.test"}, unsubscribed=True)
    assert len(users.delete_user({"cio_id": "a1b2"})) == 2
    assert users.get({"cio_id": "a1b2"}) is None


def test_an_id_that_reads_as_another_kind_is_refused(users: UserRepository) -> None:
    with pytest.raises(ValidationError, match="cannot start with"):
        users.sync_user("email:bob@x.test", {"plan": "free"})
    with pytest.raises(ValidationError, match="by id, email or cio_id"):
        users.get({"phone": "+15551234567"})


def test_stores_follow_their_outbox(tmp_path: Path) -> None:
    memory = MemoryOutbox()
    assert isinstance(user_store_for(memory), MemoryUserStore)
    sqlite = SqliteOutbox(tmp_path / "o.db")
    try:
        assert user_store_for(sqlite).outbox is sqlite
        with pytest.raises(ConfigError, match="user store"):
            UserRepository(sqlite, MemoryUserStore(memory))
    finally:
        sqlite.close()


def test_an_outbox_without_a_store_is_refused_naming_the_setting() -> None:
    class Foreign:
        """Any outbox that is neither SQLite nor memory (a Redis one, say)."""

    with pytest.raises(ConfigError, match="CIO_RELAY_OUTBOX"):
        user_store_for(Foreign())  # type: ignore[arg-type]


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_async_repository_has_the_sync_methods_with_the_same_signatures() -> None:
    sync = _public_methods(UserRepository)
    async_ = _public_methods(AsyncUserRepository)
    assert (
        set(sync)
        == set(async_)
        == {
            "sync_user",
            "sync_user_op_ids",
            "update_preferences",
            "apply_subscription_event",
            "delete_user",
            "get",
        }
    )
    for name in sync:
        assert async_[name] == sync[name], name
        assert inspect.iscoroutinefunction(getattr(AsyncUserRepository, name)), name


async def test_async_repository_records_and_enqueues(relay: Relay) -> None:
    users = AsyncUserRepository(relay)
    op_id = await users.sync_user("u1", {"plan": "pro"})
    assert await users.sync_user("u1", {"plan": "pro"}) is None
    [op] = take_all(relay.outbox)
    assert op.op_id == op_id
    state = await users.get("u1")
    assert state is not None and state.attributes == {"plan": "pro"}
    assert len(await users.delete_user("u1")) == 2
    assert await users.update_preferences("u2", unsubscribed=True)
