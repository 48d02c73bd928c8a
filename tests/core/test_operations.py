"""The Operation model: limits refused at build time, requests and v2 items per kind."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from ulid import ULID

from cio_relay import operations as ops
from cio_relay.errors import LimitExceeded, ValidationError
from cio_relay.operations import NO_ENV, Api, Kind, Operation, OperationFactory
from cio_relay.operations.kinds import API_OF, V2_KINDS
from cio_relay.operations.wire import V1_REQUESTS, V2_ITEMS


def _limit(exc_info: pytest.ExceptionInfo[LimitExceeded]) -> tuple[str, int, int]:
    return exc_info.value.field, exc_info.value.limit, exc_info.value.size


# --- limits: each names the field, the limit and the size ---------------------------------------


def test_identifier_over_150_bytes_is_refused() -> None:
    with pytest.raises(LimitExceeded) as info:
        ops.identify("x" * 151, {})
    assert _limit(info) == ("identifier.id", 150, 151)
    assert "151 bytes exceeds the limit of 150 bytes" in str(info.value)


def test_identifier_limit_counts_utf8_bytes_not_characters() -> None:
    ops.identify("é" * 75, {})  # 150 bytes: allowed
    with pytest.raises(LimitExceeded) as info:
        ops.identify("é" * 76, {})
    assert _limit(info) == ("identifier.id", 150, 152)


def test_attribute_value_over_1000_bytes_is_refused() -> None:
    ops.identify("u", {"bio": "b" * 1000})
    with pytest.raises(LimitExceeded) as info:
        ops.identify("u", {"bio": "b" * 1001})
    assert _limit(info) == ("attributes.bio", 1000, 1001)


def test_non_string_attribute_value_is_measured_as_json() -> None:
    value = list(range(300))  # serialises to 1,191 bytes
    with pytest.raises(LimitExceeded) as info:
        ops.identify("u", {"scores": value})
    assert info.value.size == len(orjson.dumps(value))


def test_attribute_name_over_150_bytes_is_refused() -> None:
    with pytest.raises(LimitExceeded) as info:
        ops.identify("u", {"n" * 151: 1})
    assert info.value.limit == 150 and info.value.size == 151
    assert info.value.field.startswith("attributes name")


def test_more_than_300_attributes_is_refused() -> None:
    ops.identify("u", {f"a{i}": i for i in range(300)})
    with pytest.raises(LimitExceeded) as info:
        ops.identify("u", {f"a{i}": i for i in range(301)})
    assert _limit(info) == ("attributes", 300, 301)
    assert info.value.unit == "attributes"


def test_env_stamp_counts_towards_the_attribute_limit() -> None:
    stamping = OperationFactory("staging", stamp_env=True)
    with pytest.raises(LimitExceeded):
        stamping.identify("u", {f"a{i}": i for i in range(300)})


def test_relationships_have_their_own_100kb_limit() -> None:
    company = {"object_type_id": "1", "object_id": "acme"}
    related = [{"identifiers": company, "relationship_attributes": {"note": "y" * 5000}}]
    relationships = {"action": "add_relationships", "relationships": related}
    op = ops.identify("u", {"cio_relationships": relationships})
    assert op.payload["attributes"]["cio_relationships"] == relationships
    too_big = [{"identifiers": company, "relationship_attributes": {"note": "y" * 100_001}}]
    with pytest.raises(LimitExceeded) as info:
        ops.identify("u", {"cio_relationships": {"relationships": too_big}})
    assert info.value.limit == 100_000


def test_v2_carries_relationships_as_the_items_own_array() -> None:
    company = {"object_type_id": "1", "object_id": "acme"}
    relationships = {"action": "add_relationships", "relationships": [{"identifiers": company}]}
    op = ops.identify("u", {"plan": "pro", "cio_relationships": relationships})
    item = op.v2_item()
    assert item is not None
    assert item["attributes"] == {"plan": "pro"}
    assert item["cio_relationships"] == [{"identifiers": company}]
    # v1 keeps its documented shape: the attribute with its action.
    assert op.v1_request().body == {"plan": "pro", "cio_relationships": relationships}


def test_removing_relationships_in_an_identify_travels_on_v1() -> None:
    company = {"cio_object_id": "obj_1"}
    removal = {"action": "delete_relationships", "relationships": [{"identifiers": company}]}
    op = ops.identify("u", {"plan": "pro", "cio_relationships": removal})
    assert op.v2_item() is None
    assert op.v1_request().body == {"plan": "pro", "cio_relationships": removal}
    with pytest.raises(ValidationError, match="phone"):
        ops.identify({"phone": "+14155552671"}, {"cio_relationships": removal})


@pytest.mark.parametrize(
    "relationships",
    [
        {"action": "add", "relationships": [{"identifiers": {"cio_object_id": "o"}}]},
        {"relationships": []},
        {"relationships": [{"identifiers": {"object_id": "acme"}}]},
        {"relationships": [{"x": "y"}]},
        [{"identifiers": {"cio_object_id": "o"}}],
    ],
)
def test_malformed_relationships_are_refused(relationships: Any) -> None:
    with pytest.raises(ValidationError) as info:
        ops.identify("u", {"cio_relationships": relationships})
    assert info.value.field.startswith("attributes.cio_relationships")


def test_only_an_id_has_the_150_byte_cap() -> None:
    long_email = "a" * 200 + "@example.com"
    assert ops.identify({"email": long_email}).identifiers == {"email": long_email}
    assert ops.identify({"cio_id": "c" * 200}).identifiers == {"cio_id": "c" * 200}
    assert ops.track_anonymous("a" * 200, "e").payload["anonymous_id"] == "a" * 200


def test_a_person_named_by_phone_travels_on_v2_only() -> None:
    op = ops.track({"phone": "+14155552671"}, "purchase", {"price": 3})
    request = op.v1_request()
    assert (request.method, request.path) == ("POST", "/api/v2/entity")
    assert request.body == op.v2_item()
    assert request.body is not None and request.body["identifiers"] == {"phone": "+14155552671"}
    with pytest.raises(ValidationError) as info:
        ops.merge({"phone": "+14155552671"}, "u2")
    assert info.value.field == "primary"
    with pytest.raises(ValidationError):
        ops.send_email(to="a@x.test", identifiers={"phone": "+14155552671"}, subject="s",
                       body="b", **{"from": "f@x.test"})  # fmt: skip


@pytest.mark.parametrize("event_type", ["event", "page", "screen"])
def test_anonymous_events_of_every_type_with_or_without_an_anonymous_id(event_type: Any) -> None:
    named = ops.track_anonymous("anon-1", "home", event_type=event_type).v1_request().body
    unnamed = ops.track_anonymous(None, "invited", event_type=event_type).v1_request().body
    assert named is not None and unnamed is not None
    assert named["anonymous_id"] == "anon-1" and "anonymous_id" not in unnamed
    assert named.get("type", "event") == unnamed.get("type", "event") == event_type
    with pytest.raises(ValidationError):
        ops.track_anonymous(None, "x", event_type="click")  # type: ignore[arg-type]


def test_sms_needs_an_e164_recipient_or_liquid() -> None:
    for to in ("+14155552671", "{{customer.phone}}"):
        op = ops.send_sms(identifiers={"id": "u"}, transactional_message_id=1, to=to)
        assert op.payload["to"] == to
    for to in (None, "", "4155552671", "+0123", "+1234567890123456"):
        with pytest.raises(ValidationError) as info:
            ops.send_sms(identifiers={"id": "u"}, transactional_message_id=1, to=to)
        assert info.value.field == "to"


def test_recipients_travel_as_comma_separated_text() -> None:
    op = ops.send_email(
        to=["a@x.test", "b@x.test"], cc=["c@x.test"], bcc="d@x.test", transactional_message_id=1,
        identifiers={"id": "u"},
    )  # fmt: skip
    body = op.v1_request().body
    assert body is not None
    assert (body["to"], body["cc"], body["bcc"]) == ("a@x.test,b@x.test", "c@x.test", "d@x.test")


def test_sends_stored_by_earlier_releases_go_out_as_documented() -> None:
    stored = ops.send_email(to="a@x.test", transactional_message_id=1)
    old = dataclasses.replace(
        stored, payload={**stored.payload, "to": ["a@x.test", "b@x.test"], "headers": {"X-A": "1"}}
    )
    body = old.v1_request().body
    assert body is not None and body["to"] == "a@x.test,b@x.test"
    assert body["headers"] == '[{"name": "X-A", "value": "1"}]'


def test_event_name_over_100_bytes_is_refused() -> None:
    ops.track("u", "e" * 100)
    with pytest.raises(LimitExceeded) as info:
        ops.track("u", "e" * 101)
    assert _limit(info) == ("name", 100, 101)


def test_event_data_over_100000_bytes_is_refused() -> None:
    data = {"blob": "d" * 100_000}
    with pytest.raises(LimitExceeded) as info:
        ops.track("u", "big", data)
    assert info.value.field == "data" and info.value.limit == 100_000
    assert info.value.size == len(orjson.dumps(data))


def test_event_data_must_be_an_object() -> None:
    with pytest.raises(ValidationError, match="data: must be an object, not list"):
        ops.track("u", "e", [1, 2])  # type: ignore[arg-type]


def test_more_than_15_recipients_is_refused() -> None:
    ops.send_email(
        to=[f"p{i}@x.test" for i in range(15)],
        identifiers={"id": "p0"},
        transactional_message_id="t",
    )
    with pytest.raises(LimitExceeded) as info:
        ops.send_email(
            to=[f"p{i}@x.test" for i in range(10)],
            cc=[f"c{i}@x.test" for i in range(6)],
            transactional_message_id="t",
        )
    assert _limit(info) == ("to", 15, 16)


def test_attachments_over_2mb_are_refused() -> None:
    with pytest.raises(LimitExceeded) as info:
        ops.send_email(
            to="a@x.test",
            transactional_message_id="t",
            attachments={"a.pdf": "A" * 1_500_000, "b.pdf": "B" * 600_000},
        )
    assert _limit(info) == ("attachments", 2_000_000, 2_100_000)


def test_attachment_filename_needs_an_extension() -> None:
    with pytest.raises(ValidationError, match="needs an extension"):
        ops.send_email(to="a@x.test", transactional_message_id="t", attachments={"x": "AA=="})


# --- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("person", "field"),
    [
        ("", "identifier.id"),
        ("   ", "identifier.id"),
        ({}, "identifier"),
        ({"id": "a", "email": "b@x"}, "identifier"),
        ({"phone": "+"}, "identifier.phone"),
        ({"phone": "14155552671"}, "identifier.phone"),
        ({"fax": "+14155552671"}, "identifier"),
    ],
)
def test_missing_or_ambiguous_identifiers_are_refused(person: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ops.identify(person, {})
    assert info.value.field == field


def test_event_name_is_required() -> None:
    with pytest.raises(ValidationError, match="name: an event name is required"):
        ops.track("u", "  ")


def test_device_platform_must_be_known() -> None:
    with pytest.raises(ValidationError, match="platform: must be one of ios, android"):
        ops.add_device("u", "tok", "windows")


def test_merge_into_self_is_refused() -> None:
    with pytest.raises(ValidationError, match="cannot merge a person into themselves"):
        ops.merge("u", {"id": "u"})


def test_transactional_needs_a_template_or_content() -> None:
    with pytest.raises(ValidationError) as info:
        ops.send_email(to="a@x.test")
    assert info.value.field == "transactional_message_id"
    ops.send_email(to="a@x.test", subject="s", body="b", **{"from": "f@x.test"})


def test_broadcast_takes_at_most_one_audience() -> None:
    with pytest.raises(ValidationError, match="at most one audience; got emails, ids"):
        ops.trigger_broadcast(3, ids=["1"], emails=["a@x.test"])
    with pytest.raises(ValidationError, match="empty recipients filter is not valid"):
        ops.trigger_broadcast(3, recipients={})
    with pytest.raises(ValidationError, match="broadcast_id"):
        ops.trigger_broadcast("welcome")


def test_unserialisable_values_are_refused_at_build_time() -> None:
    with pytest.raises(ValidationError, match="not JSON-serialisable"):
        ops.identify("u", {"when": object()})


# --- the model ----------------------------------------------------------------------------------


def test_op_ids_are_ulids_and_unique() -> None:
    first, second = ops.track("u", "e"), ops.track("u", "e")
    assert first.op_id != second.op_id
    assert str(ULID.from_str(first.op_id)) == first.op_id


def test_op_ids_carry_the_current_millisecond_and_stay_unique() -> None:
    before = time.time()
    ids = [ops.new_op_id() for _ in range(20_000)]
    after = time.time()
    assert len(set(ids)) == len(ids)
    for op_id in ids[::499]:
        parsed = ULID.from_str(op_id)
        assert str(parsed) == op_id
        assert before - 0.001 <= parsed.timestamp <= after + 0.001


def test_new_operation_equals_the_dataclass_constructor_and_stays_frozen() -> None:
    fields = ("01J00000000000000000000000", Kind.TRACK, {"id": "u"}, {"name": "e"}, 1.5, "prod")
    built = ops.new_operation(*fields)
    assert built == Operation(*fields)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.env = "dev"  # type: ignore[misc]


def test_record_round_trip_keeps_everything() -> None:
    op = ops.send_email(
        to="a@x.test", identifiers={"email": "a@x.test"}, transactional_message_id=7
    )
    op_id, kind, person_key, payload, created_at, env = op.to_record()
    assert (op_id, kind, person_key) == (op.op_id, "send_email", "email:a@x.test")
    assert Operation.from_record(op_id, kind, payload, created_at, env) == op


def test_repr_names_the_operation_not_its_personal_data() -> None:
    op = ops.identify("u", {"email": "secret-person@x.test"})
    assert "secret-person" not in repr(op)


@pytest.mark.parametrize(
    ("op", "method", "path"),
    [
        (
            ops.identify({"email": "A@x.test"}, {"plan": "pro"}),
            "PUT",
            "/api/v1/customers/A%40x.test",
        ),
        (ops.delete({"cio_id": "abc"}), "DELETE", "/api/v1/customers/cio_abc"),
        (ops.track("u/1", "e"), "POST", "/api/v1/customers/u%2F1/events"),
        (ops.page("u", "https://x.test/a"), "POST", "/api/v1/customers/u/events"),
        (ops.screen("u", "Home"), "POST", "/api/v1/customers/u/events"),
        (ops.track_anonymous("anon-1", "e"), "POST", "/api/v1/events"),
        (ops.add_device("u", "tok", "ios"), "PUT", "/api/v1/customers/u/devices"),
        (ops.delete_device("u", "t/k"), "DELETE", "/api/v1/customers/u/devices/t%2Fk"),
        (ops.suppress("u"), "POST", "/api/v1/customers/u/suppress"),
        (ops.unsuppress("u"), "POST", "/api/v1/customers/u/unsuppress"),
        (ops.merge("a", "b"), "POST", "/api/v1/merge_customers"),
        (ops.send_email(to="a@x.test", transactional_message_id=1), "POST", "/v1/send/email"),
        (
            ops.send_push(identifiers={"id": "u"}, transactional_message_id=1),
            "POST",
            "/v1/send/push",
        ),
        (
            ops.send_sms(identifiers={"id": "u"}, transactional_message_id=1, to="+1555"),
            "POST",
            "/v1/send/sms",
        ),
        (ops.trigger_broadcast(9, ids=["u"]), "POST", "/v1/campaigns/9/triggers"),
    ],
)
def test_v1_request_per_kind(op: Operation, method: str, path: str) -> None:
    request = op.v1_request()
    assert (request.method, request.path) == (method, path)
    assert request.api is op.api


def test_track_event_carries_op_id_as_dedup_id_on_both_apis() -> None:
    op = ops.track("u", "order_completed", {"total": 42}, timestamp=1_700_000_000)
    body = op.v1_request().body
    assert body == {
        "name": "order_completed",
        "data": {"total": 42},
        "id": op.op_id,
        "timestamp": 1_700_000_000,
    }
    assert op.v2_item() == {
        "type": "person",
        "action": "event",
        "identifiers": {"id": "u"},
        "name": "order_completed",
        "id": op.op_id,
        "timestamp": 1_700_000_000,
        "attributes": {"total": 42},
    }


def test_page_and_screen_events_have_their_type() -> None:
    assert ops.page("u", "https://x.test").v1_request().body["type"] == "page"  # type: ignore[index]
    assert ops.screen("u", "Home").v2_item()["action"] == "screen"  # type: ignore[index]


def test_env_stamp_on_identify_and_track_only_when_asked() -> None:
    stamping = OperationFactory("staging", stamp_env=True)
    assert stamping.identify("u", {}).payload["attributes"] == {"_env": "staging"}
    assert stamping.track("u", "e").payload["data"] == {"_env": "staging"}
    assert stamping.track("u", "e").env == "staging"
    assert OperationFactory("staging").track("u", "e").payload["data"] == {}


def test_operations_built_by_hand_carry_no_environment_and_no_stamp() -> None:
    op = ops.identify("u", {"plan": "pro"})
    assert (op.env, op.payload["attributes"]) == (NO_ENV, {"plan": "pro"})


def test_every_kind_has_a_v1_request_an_api_family_and_v2_items_exactly_for_v2_kinds() -> None:
    assert set(V1_REQUESTS) == set(Kind)
    assert set(API_OF) == set(Kind)
    assert set(V2_ITEMS) == V2_KINDS


def test_kinds_map_to_api_families_and_idempotence() -> None:
    assert ops.track("u", "e").api is Api.TRACK and ops.track("u", "e").idempotent
    email = ops.send_email(to="a@x.test", transactional_message_id=1)
    assert email.api is Api.TRANSACTIONAL and not email.idempotent
    broadcast = ops.trigger_broadcast(1)
    assert broadcast.api is Api.BROADCAST and not broadcast.idempotent
    assert broadcast.person_key == "broadcast:1"


def test_anonymous_events_stay_on_v1() -> None:
    op = ops.track_anonymous("anon-1", "e")
    assert op.kind is Kind.TRACK_ANONYMOUS and op.v2_item() is None
    assert op.person_key == "anonymous_id:anon-1"


def test_merge_v2_item_names_primary_and_secondary() -> None:
    item = ops.merge("a", {"email": "b@x.test"}).v2_item()
    assert item == {
        "type": "person",
        "action": "merge",
        "primary": {"id": "a"},
        "secondary": {"email": "b@x.test"},
    }


def test_device_items_on_v1_and_v2() -> None:
    op = ops.add_device("u", "tok", "android", last_used=5, attributes={"app": "1.2"})
    assert op.v1_request().body == {
        "device": {"id": "tok", "platform": "android", "last_used": 5, "attributes": {"app": "1.2"}}
    }
    assert op.v2_item()["device"] == {  # type: ignore[index]
        "token": "tok",
        "platform": "android",
        "last_used": 5,
        "attributes": {"app": "1.2"},
    }


def test_a_send_names_its_person_or_takes_the_one_recipient_address() -> None:
    one = ops.send_email(to="Ada <ADA@example.com>", transactional_message_id="t")
    assert one.payload["identifiers"] == {"email": "ADA@example.com"}
    for to in (["a@x.test", "b@x.test"], "a@x.test, b@x.test", "not-an-address"):
        with pytest.raises(ValidationError, match=r"^identifiers: required"):
            ops.send_email(to=to, transactional_message_id="t")
    with pytest.raises(ValidationError, match=r"^identifiers: an SMS needs"):
        ops.send_sms(to="+15555550100", transactional_message_id="t", identifiers={})


@pytest.mark.parametrize(
    "bad", ["not-a-ulid", "01ARZ3NDEKTSV4RRFFQ69G5FA", "81ARZ3NDEKTSV4RRFFQ69G5FAV"]
)
def test_an_own_op_id_must_be_a_ulid(bad: str) -> None:
    with pytest.raises(ValidationError, match=rf"^op_id: must be a ULID .*got {len(bad)}"):
        ops.track("u", "e", op_id=bad)


def test_an_own_op_id_is_kept_upper_cased() -> None:
    assert (
        ops.track("u", "e", op_id="01arz3ndektsv4rrffq69g5fav").op_id
        == "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    )


# --- odd input (issue 11) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ops.track("u", "e", {"total": float("nan")}), "data.total"),
        (lambda: ops.track("u", "e", {"a": [1, {"b": float("inf")}]}), "data.a[1].b"),
        (lambda: ops.track_anonymous("anon", "e", {"x": -float("inf")}), "data.x"),
        (lambda: ops.identify("u", {"score": float("nan")}), "attributes.score"),
        (lambda: ops.identify("u", {"big": 10**30}), "attributes.big"),
        (
            lambda: ops.add_device("u", "tok", "ios", attributes={"x": float("nan")}),
            "device.attributes.x",
        ),
        (
            lambda: ops.send_email(
                to="a@x.test", transactional_message_id=1, message_data={"p": [0.5, float("nan")]}
            ),
            "message_data.p[1]",
        ),
        (
            lambda: ops.send_email(to="a@x.test", transactional_message_id=1, send_at=1e400),
            "send_at",
        ),
        (lambda: ops.trigger_broadcast(3, data={"x": {"y": float("nan")}}), "data.x.y"),
        (lambda: ops.trigger_broadcast(3, ids=[float("inf")]), "ids[0]"),
    ],
)
def test_values_json_cannot_carry_are_refused_naming_where_they_are(
    build: Callable[[], Operation], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        build()
    assert caught.value.field == field


def test_null_and_the_text_null_are_still_fine() -> None:
    op = ops.track("u", "e", {"coupon": None, "note": "null", "list": [None]})
    assert op.payload["data"] == {"coupon": None, "note": "null", "list": [None]}


def test_nesting_deeper_than_json_writers_allow_is_refused_even_in_a_cycle() -> None:
    looped: dict[str, Any] = {}
    looped["again"] = looped
    with pytest.raises(ValidationError, match="nested more than 255 levels") as caught:
        ops.track("u", "e", looped)
    assert caught.value.field.startswith("data.again.again")
    assert len(caught.value.field) <= 203  # cut short, not 255 levels long


@pytest.mark.parametrize("timestamp", [float("nan"), float("inf"), -1, 2**60, "1700000000", True])
def test_timestamps_must_be_finite_unix_seconds(timestamp: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        ops.track("u", "e", timestamp=timestamp)
    assert caught.value.field == "timestamp"
    with pytest.raises(ValidationError, match="last_used"):
        ops.add_device("u", "tok", "ios", last_used=timestamp)


@pytest.mark.parametrize(
    "broadcast_id",
    ["²", "١٢", "1" * 19, "1" * 5000, 10**5000, 10**18, -1, "-1", True, 1.0, ""],
    ids=[
        "²",
        "١٢",
        "19-digits",
        "5000-digits",
        "int-5001-digits",
        "10**18",
        "-1",
        "'-1'",
        "True",
        "1.0",
        "empty",
    ],
)
def test_broadcast_ids_are_ascii_digits_or_ints_in_range(broadcast_id: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        ops.trigger_broadcast(broadcast_id)
    assert caught.value.field == "broadcast_id"
    assert "1 to 18 ASCII digits" in str(caught.value)
    assert len(str(caught.value)) < 200  # a long id is described, not echoed whole


def test_broadcast_ids_as_digits_or_ints_are_the_same_number() -> None:
    assert ops.trigger_broadcast("012").payload["broadcast_id"] == 12
    assert ops.trigger_broadcast(10**18 - 1).payload["broadcast_id"] == 10**18 - 1


@pytest.mark.parametrize("dots", [".", ".."])
def test_dot_ids_and_tokens_are_refused_because_no_url_carries_them(dots: str) -> None:
    for build, field in [
        (lambda: ops.track(dots, "e"), "identifier.id"),
        (lambda: ops.delete({"email": dots}), "identifier.email"),
        (lambda: ops.identify({"cio_id": dots}), "identifier.cio_id"),
        (lambda: ops.merge("u", dots), "secondary.id"),
        (
            lambda: ops.send_email(
                to="a@x.test", identifiers={"id": dots}, transactional_message_id=1
            ),
            "identifiers.id",
        ),
        (lambda: ops.add_device("u", dots, "ios"), "token"),
        (lambda: ops.delete_device("u", dots), "token"),
    ]:
        with pytest.raises(ValidationError, match=re.escape("'.' and '..'")) as caught:
            build()
        assert caught.value.field == field
    assert ops.track("...", "e").identifiers == {"id": "..."}  # only the two dot segments


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"X-Foo": "a\r\nBcc: someone@evil.example"}, "headers.X-Foo"),
        ({"X-Foo": "a\rb"}, "headers.X-Foo"),
        ({"X-Foo": "a\x00"}, "headers.X-Foo"),
        ({"X-Foo": 3}, "headers.X-Foo"),
        ({"X-Foo\r\nBcc": "x"}, "headers"),
        ({"X Foo": "x"}, "headers"),
        ({"": "x"}, "headers"),
        ({"Subjéct": "x"}, "headers"),
        ({"X-Foo": "two words"}, "headers.X-Foo"),  # "no non-ASCII characters or spaces"
        ({"X-Foo": "café"}, "headers.X-Foo"),
        ([{"name": "X-Foo"}], "headers"),
        ("not json", "headers"),
        (["X-Foo"], "headers"),
    ],
)
def test_email_headers_must_be_tokens_with_single_line_values(headers: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ops.send_email(to="a@x.test", transactional_message_id=1, headers=headers)
    assert caught.value.field == field


def test_ordinary_email_headers_pass_through() -> None:
    headers = {"X-Campaign": "spring;tier=2", "List-Unsubscribe": "<mailto:u@x.test>"}
    op = ops.send_email(to="a@x.test", transactional_message_id=1, headers=headers)
    # As the documents send them: JSON text of a list of {name, value}.
    as_sent = [{"name": name, "value": value} for name, value in headers.items()]
    assert orjson.loads(op.payload["headers"]) == as_sent
    for given in (as_sent, op.payload["headers"]):
        again = ops.send_email(to="a@x.test", transactional_message_id=1, headers=given)
        assert again.payload["headers"] == op.payload["headers"]
