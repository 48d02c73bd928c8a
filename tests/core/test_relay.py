"""The Relay facade: validate, write durably, return the op id; refuse bad input whole."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from ulid import ULID

from cio_relay import AsyncRelay, Relay, Settings
from cio_relay import operations as ops
from cio_relay.errors import LimitExceeded, OutboxFullError, ValidationError
from cio_relay.operations import Kind, Operation, OperationFactory
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
    "send_sms": lambda r: r.send_sms(
        identifiers={"id": "u11"}, transactional_message_id=3, to="+14155550111"
    ),
    "send_whatsapp": lambda r: r.send_whatsapp(
        identifiers={"id": "u12"}, transactional_message_id=4, to="+15551234567"
    ),
    "send_in_app": lambda r: r.send_in_app(identifiers={"id": "u13"}, transactional_message_id=5),
    "send_inbox_message": lambda r: r.send_inbox_message(
        identifiers={"id": "u14"}, transactional_message_id=6
    ),
    "trigger_broadcast": lambda r: r.trigger_broadcast(5, ids=["u1"]),
    "add_relationships": lambda r: r.add_relationships(
        "u15", [{"object_type_id": "1", "object_id": "acme"}]
    ),
    "delete_relationships": lambda r: r.delete_relationships(
        "u16", [{"cio_object_id": "obb7fd050101"}]
    ),
    "identify_object": lambda r: r.identify_object(
        {"object_type_id": 1, "object_id": "acme"}, {"name": "Acme"}, people=["u17"]
    ),
    "delete_object": lambda r: r.delete_object({"object_type_id": "1", "object_id": "acme"}),
    "identify_anonymous": lambda r: r.identify_anonymous(
        {"object_type_id": "1", "object_id": "acme"}, "anon-2"
    ),
    "add_object_relationships": lambda r: r.add_object_relationships(
        {"object_type_id": "1", "object_id": "acme"}, [{"email": "a@x.test"}]
    ),
    "delete_object_relationships": lambda r: r.delete_object_relationships(
        {"object_type_id": "1", "object_id": "acme"}, ["u18"]
    ),
    "add_to_segment": lambda r: r.add_to_segment(3, ["u19", "u20"]),
    "remove_from_segment": lambda r: r.remove_from_segment("3", ["a@x.test"], id_type="email"),
    "track_metric": lambda r: r.track_metric("dlv-1", "opened", recipient="a@x.test"),
    "track_push_metric": lambda r: r.track_push_metric("dlv-2", "delivered", "device-tok"),
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
    "segment of 1001 ids": (
        lambda r: r.add_to_segment(3, [f"u{i}" for i in range(1001)]),
        LimitExceeded,
        "ids",
    ),
    "segment id of 151 bytes": (
        lambda r: r.remove_from_segment(3, ["ok", "u" * 151]),
        LimitExceeded,
        "ids[1].id",
    ),
    "segment phone id type": (
        lambda r: r.add_to_segment(3, ["+14155552671"], id_type="phone"),  # type: ignore[arg-type]
        ValidationError,
        "id_type",
    ),
    "segment id not a number": (
        lambda r: r.add_to_segment("seg-1", ["u"]),
        ValidationError,
        "segment_id",
    ),
    "object without object_id": (
        lambda r: r.identify_object({"object_type_id": "1"}, {"name": "x"}),
        ValidationError,
        "object",
    ),
    "object id of 151 bytes": (
        lambda r: r.delete_object({"object_type_id": "1", "object_id": "o" * 151}),
        LimitExceeded,
        "object.object_id",
    ),
    "object type not a number": (
        lambda r: r.delete_object({"object_type_id": "companies", "object_id": "acme"}),
        ValidationError,
        "object.object_type_id",
    ),
    "object attribute of 1001 bytes": (
        lambda r: r.identify_object({"cio_object_id": "o1"}, {"bio": "x" * 1001}),
        LimitExceeded,
        "attributes.bio",
    ),
    "object related to a phone": (
        lambda r: r.add_object_relationships({"cio_object_id": "o1"}, [{"phone": "+14155552671"}]),
        ValidationError,
        "people[0].identifiers",
    ),
    "relationships of 100,001 bytes": (
        lambda r: r.add_relationships(
            "u",
            [
                {
                    "identifiers": {"cio_object_id": "o1"},
                    "relationship_attributes": {"note": "x" * 100_000},
                }
            ],
        ),
        LimitExceeded,
        "relationships",
    ),
    "relationships empty": (
        lambda r: r.delete_relationships("u", []),
        ValidationError,
        "relationships",
    ),
    "anonymous object without anonymous_id": (
        lambda r: r.identify_anonymous({"cio_object_id": "o1"}, ""),
        ValidationError,
        "anonymous_id",
    ),
    "metric unknown": (
        lambda r: r.track_metric("d", "read"),  # type: ignore[arg-type]
        ValidationError,
        "metric",
    ),
    "metric without delivery": (
        lambda r: r.track_metric("", "opened"),
        ValidationError,
        "delivery_id",
    ),
    "push metric bounced": (
        lambda r: r.track_push_metric("d", "bounced", "tok"),  # type: ignore[arg-type]
        ValidationError,
        "event",
    ),
    "push metric without device": (
        lambda r: r.track_push_metric("d", "opened", ""),
        ValidationError,
        "device_id",
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


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_async_relay_has_the_sync_methods_with_the_same_signatures() -> None:
    sync = _public_methods(Relay)
    async_ = _public_methods(AsyncRelay)
    assert set(sync) - {"close"} == set(async_) - {"aclose"}
    assert set(CALLS) | {"enqueue", "worker"} == set(sync) - {"close"}
    for name in set(sync) - {"close"}:
        # Names, kinds, annotations and defaults of every parameter, and the return annotation.
        assert async_[name] == sync[name], name
        if name != "worker":
            assert inspect.iscoroutinefunction(getattr(AsyncRelay, name)), name


def test_relay_methods_are_fully_typed() -> None:
    for name, signature in _public_methods(AsyncRelay).items():
        unannotated = [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.annotation is inspect.Parameter.empty
        ]
        assert unannotated == [] and signature.return_annotation != "Any", name


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


def test_two_event_loops_on_two_threads_never_get_each_others_operations(tmp_path: Path) -> None:
    relay = AsyncRelay(Settings(), outbox=SqliteOutbox(tmp_path / "outbox.db"))
    calls = 400
    start = threading.Barrier(2)

    async def caller(thread: int) -> list[tuple[str, str]]:
        async def one(i: int) -> tuple[str, str]:
            person, what = f"t{thread}-u{i}", f"{thread}/{i}"  # a person per call: all leasable
            if i % 2:
                return await relay.page(person, f"https://x.test/{what}"), what
            return await relay.track(person, "e", {"what": what}), what

        start.wait()
        return await asyncio.gather(*(one(i) for i in range(calls)))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the threads take turns as often as they can
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = pool.map(lambda thread: asyncio.run(caller(thread)), (0, 1))
            returned = [answer for each in answers for answer in each]
    finally:
        sys.setswitchinterval(switch)
    stored = {op.op_id: op for op in _stored_ops(relay.outbox)}
    assert len(returned) == len(stored) == 2 * calls  # distinct ids, every one stored
    for op_id, what in returned:
        op = stored[op_id]
        sent = op.payload["name"] if op.kind is Kind.PAGE else op.payload["data"]["what"]
        assert sent in (what, f"https://x.test/{what}")  # the caller's own operation
    relay.outbox.close()


def _stored_ops(outbox: Any) -> list[Operation]:
    leases = outbox.lease(10_000, 60.0)
    outbox.release(leases)
    return [lease.op for lease in leases]


UTC_NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("call", "read"),
    [
        (lambda r, t: r.track("u", "e", timestamp=t), lambda op: op.payload["timestamp"]),
        (
            lambda r, t: r.page("u", "https://x.test", timestamp=t),
            lambda op: op.payload["timestamp"],
        ),
        (lambda r, t: r.screen("u", "Home", timestamp=t), lambda op: op.payload["timestamp"]),
        (
            lambda r, t: r.track_anonymous("a", "e", timestamp=t),
            lambda op: op.payload["timestamp"],
        ),
        (
            lambda r, t: r.add_device("u", "tok", "ios", last_used=t),
            lambda op: op.payload["last_used"],
        ),
        (
            lambda r, t: r.send_email(to="a@x.test", transactional_message_id=1, send_at=t),
            lambda op: op.payload["send_at"],
        ),
    ],
    ids=["track", "page", "screen", "track_anonymous", "add_device", "send_email"],
)
def test_a_datetime_with_a_time_zone_is_stored_as_unix_seconds(
    call: Callable[[Relay, Any], str], read: Callable[[Operation], Any]
) -> None:
    in_paris = UTC_NOON.astimezone(timezone(timedelta(hours=2)))
    for when in (in_paris, UTC_NOON, 1_714_564_800.9):
        relay = Relay(Settings(), outbox=MemoryOutbox())
        call(relay, when)
        [op] = _stored(relay)
        assert read(op) == 1_714_564_800


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (datetime(2024, 5, 1, 12, 0), "without a time zone"),
        ("2024-05-01T12:00:00Z", "Unix seconds"),
        (b"1714564800", "Unix seconds"),
        (object(), "Unix seconds"),
        (date(2024, 5, 1), "Unix seconds"),
    ],
    ids=["naive-datetime", "text", "bytes", "object", "date"],
)
async def test_a_timestamp_that_is_not_one_is_a_validation_error_naming_the_field(
    value: Any, message: str
) -> None:
    outbox = MemoryOutbox()
    sync, async_ = Relay(Settings(), outbox=outbox), AsyncRelay(Settings(), outbox=outbox)
    for field, call in [
        ("timestamp", lambda r: r.track("u", "e", timestamp=value)),
        ("last_used", lambda r: r.add_device("u", "tok", "ios", last_used=value)),
        (
            "send_at",
            lambda r: r.send_email(to="a@x.test", transactional_message_id=1, send_at=value),
        ),
    ]:
        with pytest.raises(ValidationError, match=message) as caught:
            call(sync)
        assert caught.value.field == field
        with pytest.raises(ValidationError, match=message) as caught:
            await call(async_)
        assert caught.value.field == field
    assert outbox.depth().pending == 0
    await async_.aclose()


def test_an_operation_built_by_hand_takes_the_relays_environment_and_stamp(relay: Relay) -> None:
    track_id, identify_id = relay.enqueue(ops.track("u1", "e", {"x": 1}), ops.identify("u2"))
    own_id = relay.identify("u3")
    stored = {op.op_id: op for op in _stored(relay)}
    track, by_hand, own = stored[track_id], stored[identify_id], stored[own_id]
    assert (track.env, track.payload["data"]) == ("staging", {"x": 1, "_env": "staging"})
    assert by_hand.env == own.env == "staging"
    assert by_hand.payload == own.payload == {"attributes": {"_env": "staging"}}


async def test_an_operation_built_for_another_environment_is_refused_whole() -> None:
    outbox = MemoryOutbox()
    production = OperationFactory("production")
    for relay in (Relay(Settings(env="staging"), outbox=outbox),):
        with pytest.raises(ValidationError, match="built for 'production'") as caught:
            relay.enqueue(ops.track("u", "ok"), production.track("u", "e"))
        assert caught.value.field == "env"
    async_relay = AsyncRelay(Settings(env="staging"), outbox=outbox)
    with pytest.raises(ValidationError, match="built for 'production'"):
        await async_relay.enqueue(production.track("u", "e"))
    staged = OperationFactory("staging", stamp_env=True).track("u", "e")
    assert await async_relay.enqueue(staged) == [staged.op_id]
    assert [lease.op for lease in outbox.lease(10, 60.0)] == [staged]
    await async_relay.aclose()
