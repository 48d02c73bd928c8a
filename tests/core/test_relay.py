"""The Relay facade: validate, write durably, return the op id; refuse bad input whole."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ulid import ULID

from cio_relay import AsyncRelay, Relay, Settings
from cio_relay.errors import LimitExceeded, OutboxFullError, ValidationError
from cio_relay.operations import Kind
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.outbox.sqlite import SqliteOutbox


@pytest.fixture
def relay() -> Relay:
    return Relay(Settings(env="staging"), outbox=MemoryOutbox())


def _stored(relay: Relay) -> list[Any]:
    leases = relay.outbox.lease(1000, 60.0)
    relay.outbox.release(leases)
    return [lease.op for lease in leases]


CALLS: dict[str, Callable[[Relay], str]] = {
    "identify": lambda r: r.identify("u1", email="a@x.test"),
    "track": lambda r: r.track("u1", "order_completed", {"total": 3}),
    "track_anonymous": lambda r: r.track_anonymous("anon-1", "viewed"),
    "page": lambda r: r.page("u2", "https://x.test/pricing"),
    "screen": lambda r: r.screen("u3", "Home"),
    "add_device": lambda r: r.add_device("u4", "tok", "ios"),
    "delete_device": lambda r: r.delete_device("u5", "tok"),
    "suppress": lambda r: r.suppress("u6"),
    "unsuppress": lambda r: r.unsuppress("u7"),
    "merge": lambda r: r.merge("u8", {"email": "old@x.test"}),
    "delete": lambda r: r.delete("u9"),
    "send_email": lambda r: r.send_email(to="a@x.test", transactional_message_id="welcome"),
    "send_push": lambda r: r.send_push(identifiers={"id": "u10"}, transactional_message_id=2),
    "send_sms": lambda r: r.send_sms(identifiers={"id": "u11"}, transactional_message_id=3),
    "trigger_broadcast": lambda r: r.trigger_broadcast(5, ids=["u1"]),
}


@pytest.mark.parametrize("method", sorted(CALLS))
def test_every_method_stores_one_operation_and_returns_its_ulid(relay: Relay, method: str) -> None:
    op_id = CALLS[method](relay)
    assert str(ULID.from_str(op_id)) == op_id
    [op] = _stored(relay)
    assert op.op_id == op_id
    assert op.kind is Kind(method)
    assert op.env == "staging"


BAD: dict[str, tuple[Callable[[Relay], Any], type[Exception], str]] = {
    "identify oversized value": (
        lambda r: r.identify("u", bio="x" * 1001),
        LimitExceeded,
        "attributes.bio",
    ),
    "identify too many attributes": (
        lambda r: r.identify("u", **{f"a{i}": 1 for i in range(300)}),
        LimitExceeded,
        "attributes",
    ),  # 300 + the _env stamp
    "identify missing id": (lambda r: r.identify("", plan="pro"), ValidationError, "identifier.id"),
    "track long name": (lambda r: r.track("u", "n" * 101), LimitExceeded, "name"),
    "track big data": (lambda r: r.track("u", "e", {"b": "x" * 100_001}), LimitExceeded, "data"),
    "track missing person": (lambda r: r.track({}, "e"), ValidationError, "identifier"),
    "anonymous missing id": (lambda r: r.track_anonymous("", "e"), ValidationError, "anonymous_id"),
    "page long id": (lambda r: r.page("u" * 151, "https://x.test"), LimitExceeded, "identifier.id"),
    "device bad platform": (lambda r: r.add_device("u", "t", "web"), ValidationError, "platform"),
    "merge same person": (lambda r: r.merge("u", "u"), ValidationError, "secondary"),
    "email 16 recipients": (
        lambda r: r.send_email(to=[f"{i}@x.test" for i in range(16)], transactional_message_id=1),
        LimitExceeded,
        "to",
    ),
    "email no template": (
        lambda r: r.send_email(to="a@x.test"),
        ValidationError,
        "transactional_message_id",
    ),
    "push no identifiers": (
        lambda r: r.send_push(identifiers={}, transactional_message_id=1),
        ValidationError,
        "identifiers",
    ),
    "broadcast two audiences": (
        lambda r: r.trigger_broadcast(1, ids=["a"], emails=["b"]),
        ValidationError,
        "audience",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_with_the_field_and_nothing_is_stored(relay: Relay, case: str) -> None:
    call, error, field = BAD[case]
    with pytest.raises(error) as info:
        call(relay)
    assert getattr(info.value, "field", None) == field
    assert relay.outbox.depth().pending == 0


def test_limit_errors_name_limit_and_size(relay: Relay) -> None:
    with pytest.raises(
        LimitExceeded, match=r"attributes\.bio: 1001 bytes exceeds the limit of 1000"
    ):
        relay.identify("u", bio="x" * 1001)


def test_identify_and_track_are_stamped_with_the_environment(relay: Relay) -> None:
    relay.identify("u1", plan="pro")
    relay.track("u2", "e")
    identify, track = sorted(_stored(relay), key=lambda op: op.kind.value)
    assert identify.payload["attributes"]["_env"] == "staging"
    assert track.payload["data"]["_env"] == "staging"


def test_env_stamp_can_be_turned_off() -> None:
    relay = Relay(Settings(stamp_env=False), outbox=MemoryOutbox())
    relay.identify("u", plan="pro")
    [op] = _stored(relay)
    assert "_env" not in op.payload["attributes"]


def test_own_op_id_makes_a_retried_call_a_no_op(relay: Relay) -> None:
    op_id = str(ULID())
    assert relay.track("u", "e", op_id=op_id) == op_id
    assert relay.track("u", "e", op_id=op_id) == op_id
    assert relay.outbox.depth().pending == 1


def test_backpressure_refuses_past_the_maximum_depth() -> None:
    relay = Relay(Settings(outbox_max_depth=3), outbox=MemoryOutbox())
    for i in range(3):
        relay.track(f"u{i}", "e")
    relay.guarded_outbox._backpressure._checked_at = (
        0.0  # force a fresh look instead of the 1 s cache
    )
    with pytest.raises(OutboxFullError, match="outbox depth 3 is past the maximum of 3"):
        relay.track("u9", "e")
    assert relay.outbox.depth().pending == 3


def test_on_enqueued_hook_sees_each_operation(relay: Relay) -> None:
    seen: list[str] = []
    relay.hooks.on_enqueued(lambda op: seen.append(op.op_id))
    op_id = relay.track("u", "e")
    assert seen == [op_id]


def _public(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls) if not name.startswith("_")}


def test_async_relay_mirrors_the_sync_methods() -> None:
    sync_methods = _public(Relay) - {"close", "from_env", "worker"}
    async_methods = _public(AsyncRelay) - {"aclose", "from_env", "worker"}
    assert sync_methods - async_methods == set()
    for name in CALLS:
        assert inspect.iscoroutinefunction(getattr(AsyncRelay, name)), name


async def test_async_relay_stores_durably_and_returns_op_ids() -> None:
    relay = AsyncRelay(Settings(), outbox=MemoryOutbox())
    op_id = await relay.track("u", "e", {"x": 1})
    email_id = await relay.send_email(to="a@x.test", transactional_message_id=1)
    with pytest.raises(LimitExceeded):
        await relay.identify("u", bio="x" * 2000)
    assert relay.outbox.depth().pending == 2
    leases = relay.outbox.lease(10, 60.0)
    assert {lease.op.op_id for lease in leases} == {op_id, email_id}
    await relay.aclose()


def test_repr_shows_no_secrets() -> None:
    relay = Relay(Settings(track_api_key="sekrit-track", site_id="s"), outbox=MemoryOutbox())
    assert "sekrit" not in repr(relay)


async def test_concurrent_async_calls_share_commits_and_each_returns_durable(
    tmp_path: Path,
) -> None:
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    relay = AsyncRelay(Settings(), outbox=outbox)
    calls = [relay.track(f"u{i % 7}", "e", {"i": i}) for i in range(150)]
    calls += [relay.suppress(f"s{i}") for i in range(100)]
    calls += [relay.send_email(to=f"p{i}@x.test", transactional_message_id=1) for i in range(50)]
    op_ids = await asyncio.gather(*calls)
    # Every call returned after its write: all 300 are in the file, in fewer commits than calls.
    assert outbox.depth().pending == 300 and len(set(op_ids)) == 300
    assert outbox.enqueue_commits <= 2  # one thread hop and commit for the group
    await relay.aclose()
    reopened = SqliteOutbox(tmp_path / "outbox.db")
    assert reopened.depth().pending == 300
    reopened.close()


def test_an_async_relay_serves_one_event_loop_after_another() -> None:
    relay = AsyncRelay(Settings(), outbox=MemoryOutbox())
    first = asyncio.run(relay.track("u", "first"))
    second = asyncio.run(relay.identify("u", plan="pro"))
    assert [lease.op.op_id for lease in relay.outbox.lease(10, 60.0)] == [first]
    assert first != second and relay.outbox.depth().pending == 2
