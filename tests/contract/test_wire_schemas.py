"""Every request cio-relay builds, for every operation kind, as Customer.io documents it.

Each operation's v1 request is compared with the request body that track-api.json documents for
its path and method (the App API's sends and broadcast triggers with the request objects in its
components, since the App API document is not published beside it), and its ``/api/v2/batch``
item with the batch's item schema and with ``/api/v2/entity``. Hypothesis draws the inputs
(identifiers of every type, attributes of every JSON type, relationships, recipients as lists,
header dicts, anonymous events with and without an ``anonymous_id``); a table gives one
operation of every kind, and a test over ``Kind`` fails until a new kind has one.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cio_relay import operations as ops
from cio_relay.operations import Kind, Operation, Request
from cio_relay.operations.kinds import V2_KINDS
from cio_relay.operations.wire import RELATIONSHIPS
from tests.contract.openapi import documented_paths, path_validator, schema_validator

#: The App API's request objects, kept in track-api.json's components (see its README).
APP_SCHEMAS = {
    "/v1/send/email": "sendemail",
    "/v1/send/sms": "sendsms",
    "/v1/send/push": "sendpush",
    "/v1/send/in_app": "sendinapp",
    "/v1/send/inbox_message": "sendinbox",
    # WhatsApp's send has no request object in track-api.json: what it shares with every send.
    "/v1/send/whatsapp": "transactionalSharedObject",
    "/v1/campaigns/{broadcast_id}/triggers": "campaignRequest",
}


def _template(path: str) -> re.Pattern[str]:
    return re.compile("".join(
        "[^/]+" if part.startswith("{") else re.escape(part)
        for part in re.split(r"(\{[^}]+\})", path)
    ) + "$")  # fmt: skip


def _documented(request: Request) -> tuple[str, Any]:
    """The documented path of ``request`` and the validator of its body (None: no body)."""
    for path, schema in APP_SCHEMAS.items():
        if _template(path).match(request.path):
            return path, schema_validator(schema)
    bare_path = request.path.partition("?")[0]  # a segment change's ?id_type=
    for path, methods in documented_paths().items():
        if _template(path).match(bare_path) and request.method.lower() in methods:
            has_body = "requestBody" in methods[request.method.lower()]
            return path, path_validator(path, request.method) if has_body else None
    pytest.fail(f"{request.method} {request.path} is not a documented Track or App API request")


def _errors(validator: Any, body: Any) -> list[str]:
    return [
        f"{error.instance_path}: {error.message[:300]}" for error in validator.iter_errors(body)
    ]


def assert_documented(op: Operation) -> None:
    """``op``'s v1 request and v2 item are what the documents describe."""
    request = op.v1_request()
    path, validator = _documented(request)
    if validator is None:
        assert request.body is None, f"{request.method} {path} documents no body"
    else:
        assert request.body is not None, f"{request.method} {path} needs a body"
        assert not _errors(validator, request.body), (
            path,
            request.body,
            _errors(validator, request.body),
        )
    item = op.v2_item()
    if item is None:
        return
    for validator in (_batch_item(), path_validator("/api/v2/entity", "POST")):
        assert not _errors(validator, item), (item, _errors(validator, item))
    # The documents leave ``attributes`` open, so the schema cannot see relationships put
    # there: v2 carries them in the item's own array (Why 2 of issue 13).
    assert RELATIONSHIPS not in item.get("attributes", {}), item


def _batch_item() -> Any:
    validator = path_validator("/api/v2/batch", "POST")
    return _ItemOfBatch(validator)


class _ItemOfBatch:
    """One item checked as the only item of a batch (the batch's schema is the documented one)."""

    def __init__(self, batch: Any) -> None:
        self._batch = batch

    def iter_errors(self, item: Any) -> Any:
        return self._batch.iter_errors({"batch": [item]})


# --- one operation of every kind ------------------------------------------------------------------

_RELATED = {
    "action": "add_relationships",
    "relationships": [
        {"identifiers": {"object_type_id": "1", "object_id": "acme"},
         "relationship_attributes": {"role": "admin"}},
        {"identifiers": {"cio_object_id": "obj_1"}},
    ],
}  # fmt: skip

EXAMPLES: dict[Kind, Callable[[], Operation]] = {
    Kind.IDENTIFY: lambda: ops.identify("u1", {"plan": "pro", RELATIONSHIPS: _RELATED}),
    Kind.DELETE: lambda: ops.delete({"email": "a@example.com"}),
    Kind.TRACK: lambda: ops.track({"cio_id": "a3000001"}, "purchase", {"price": 23.45}),
    Kind.TRACK_ANONYMOUS: lambda: ops.track_anonymous(None, "invited", {"to": "b@example.com"}),
    Kind.PAGE: lambda: ops.page("u1", "https://example.com/pricing", {"referrer": "x"}),
    Kind.SCREEN: lambda: ops.screen("u1", "Dashboard"),
    Kind.ADD_DEVICE: lambda: ops.add_device("u1", "tok", "ios", last_used=1700000000),
    Kind.DELETE_DEVICE: lambda: ops.delete_device("u1", "tok"),
    Kind.SUPPRESS: lambda: ops.suppress("u1"),
    Kind.UNSUPPRESS: lambda: ops.unsuppress("u1"),
    Kind.MERGE: lambda: ops.merge("u1", {"email": "old@example.com"}),
    Kind.SEND_EMAIL: lambda: ops.send_email(
        to=["a@example.com", "b@example.com"],
        identifiers={"id": "u1"},
        transactional_message_id=3,
        cc=["c@example.com"],
        headers={"X-Tag": "welcome"},
    ),
    Kind.SEND_PUSH: lambda: ops.send_push(identifiers={"id": "u1"}, transactional_message_id=4),
    Kind.SEND_SMS: lambda: ops.send_sms(
        identifiers={"id": "u1"}, transactional_message_id="welcome", to="+14155552671"
    ),
    Kind.TRIGGER_BROADCAST: lambda: ops.trigger_broadcast(7, ids=["u1"], data={"a": 1}),
    Kind.SEND_WHATSAPP: lambda: ops.send_whatsapp(
        identifiers={"email": "a@example.com"}, transactional_message_id=5, to="+14155552671"
    ),
    Kind.SEND_IN_APP: lambda: ops.send_in_app(identifiers={"id": "u1"}, transactional_message_id=6),
    Kind.SEND_INBOX_MESSAGE: lambda: ops.send_inbox_message(
        identifiers={"cio_id": "a3000001"}, transactional_message_id="inbox", language="fr"
    ),
    Kind.ADD_RELATIONSHIPS: lambda: ops.add_relationships(
        {"phone": "+14155552671"},
        [{"identifiers": {"object_type_id": 1, "object_id": "acme"},
          "relationship_attributes": {"role": "admin"}},
         {"cio_object_id": "obb7fd050101"}],
    ),
    Kind.DELETE_RELATIONSHIPS: lambda: ops.delete_relationships(
        "u1", [{"object_type_id": "1", "object_id": "acme"}]
    ),
    Kind.IDENTIFY_OBJECT: lambda: ops.identify_object(
        {"object_type_id": "1", "object_id": "acme"},
        {"name": "Acme Corp", "seats": 50},
        people=["u1", {"identifiers": {"email": "a@example.com"},
                       "relationship_attributes": {"role": "admin"}}],
    ),
    Kind.DELETE_OBJECT: lambda: ops.delete_object({"cio_object_id": "obb7fd050101"}),
    Kind.IDENTIFY_ANONYMOUS: lambda: ops.identify_anonymous(
        {"object_type_id": "1", "object_id": "acme"}, "anon-abc-123", {"name": "Acme Corp"}
    ),
    Kind.ADD_OBJECT_RELATIONSHIPS: lambda: ops.add_object_relationships(
        {"object_type_id": "2", "object_id": "course-7"}, [{"cio_id": "a3000001"}]
    ),
    Kind.DELETE_OBJECT_RELATIONSHIPS: lambda: ops.delete_object_relationships(
        {"object_type_id": "2", "object_id": "course-7"}, ["u1"]
    ),
    Kind.ADD_TO_SEGMENT: lambda: ops.add_to_segment(7, ["a@example.com"], id_type="email"),
    Kind.REMOVE_FROM_SEGMENT: lambda: ops.remove_from_segment("7", ["u1", "u2"]),
    Kind.TRACK_METRIC: lambda: ops.track_metric(
        "RPILAgUBcRhIBqSfeiIwdIYJKxTY", "bounced", recipient="a@example.com", reason="full"
    ),
    Kind.TRACK_PUSH_METRIC: lambda: ops.track_push_metric(
        "RPILAgUBcRhIBqSfeiIwdIYJKxTY", "opened", "device-token", timestamp=1613063089
    ),
}  # fmt: skip


def test_every_kind_has_an_example() -> None:
    assert set(EXAMPLES) == set(Kind), f"add an example for {sorted(set(Kind) - set(EXAMPLES))}"


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_kind_is_sent_as_documented(kind: Kind) -> None:
    op = EXAMPLES[kind]()
    assert op.kind is kind
    assert_documented(op)
    assert (op.v2_item() is not None) == (kind in V2_KINDS)


# --- inputs drawn by hypothesis -------------------------------------------------------------------

_text = st.text(string.ascii_letters + string.digits + "-_.@ é", min_size=1, max_size=20).filter(
    lambda value: value.strip() not in ("", ".", "..")
)
_phone = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)
_identifiers = st.one_of(
    _text.map(lambda value: {"id": value}),
    _text.map(lambda value: {"email": value}),
    _phone.map(lambda value: {"phone": value}),
    _text.map(lambda value: {"cio_id": value}),
)
_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_json = st.recursive(
    _json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
#: What v1's identify documents for a value: a string, an integer or a boolean (its
#: additionalProperties); v2's identify takes any JSON.
_v1_value = st.one_of(st.booleans(), st.integers(-(2**53), 2**53), _text)
_object_ids = st.one_of(
    st.fixed_dictionaries({"object_type_id": st.integers(1, 9).map(str), "object_id": _text}),
    st.fixed_dictionaries({"cio_object_id": _text}),
)
_relationship = st.fixed_dictionaries(
    {"identifiers": _object_ids},
    optional={"relationship_attributes": st.dictionaries(_text, _json, max_size=2)},
)
_relationships = st.fixed_dictionaries(
    {"relationships": st.lists(_relationship, min_size=1, max_size=3)},
    optional={"action": st.sampled_from(["add_relationships", "delete_relationships"])},
)
_name = st.text(string.ascii_letters + " /é", min_size=1, max_size=30).filter(str.strip)
_address = st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.com", fullmatch=True)
_recipients = st.one_of(_address, st.lists(_address, min_size=1, max_size=4))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    person=_identifiers,
    attributes=st.dictionaries(_text, _json, max_size=4),
    relationships=st.none() | _relationships,
)
def test_identify_is_documented_for_any_identifier_and_attributes(
    person: dict[str, str], attributes: dict[str, Any], relationships: dict[str, Any] | None
) -> None:
    attributes.pop(RELATIONSHIPS, None)
    removes = relationships is not None and relationships.get("action") == "delete_relationships"
    assume(not (removes and "phone" in person))  # refused at build: see test_operations
    if relationships is not None:
        attributes[RELATIONSHIPS] = relationships
    op = ops.identify(person, attributes)
    item = op.v2_item()
    if item is not None:
        assert_documented_v2(item)
        if relationships is not None:
            assert item[RELATIONSHIPS] == relationships["relationships"]
    else:  # removing relationships while setting attributes: v1, as v1 documents it
        assert relationships is not None and relationships["action"] == "delete_relationships"


@settings(max_examples=60)
@given(
    person=_identifiers.filter(lambda ids: "phone" not in ids),
    attributes=st.dictionaries(_text, _v1_value, max_size=4),
    relationships=st.none() | _relationships,
)
def test_identify_on_v1_is_documented(
    person: dict[str, str], attributes: dict[str, Any], relationships: dict[str, Any] | None
) -> None:
    if relationships is not None:
        attributes[RELATIONSHIPS] = relationships
    assert_documented(ops.identify(person, attributes))


@settings(max_examples=40)
@given(
    person=_identifiers,
    kind=st.sampled_from([Kind.TRACK, Kind.PAGE, Kind.SCREEN]),
    name=_name,
    data=st.dictionaries(_text, _json, max_size=3),
)
def test_person_events_are_documented(
    person: dict[str, str], kind: Kind, name: str, data: dict[str, Any]
) -> None:
    build = {Kind.TRACK: ops.track, Kind.PAGE: ops.page, Kind.SCREEN: ops.screen}[kind]
    assert_documented(build(person, name, data))


@settings(max_examples=40)
@given(
    anonymous_id=st.none() | _text,
    event_type=st.sampled_from(["event", "page", "screen"]),
    name=_name,
    data=st.dictionaries(_text, _json, max_size=3),
)
def test_anonymous_events_are_documented(
    anonymous_id: str | None, event_type: Any, name: str, data: dict[str, Any]
) -> None:
    op = ops.track_anonymous(anonymous_id, name, data, event_type=event_type)
    assert_documented(op)
    body = op.v1_request().body
    assert body is not None and body.get("type", "event") == event_type
    assert body.get("anonymous_id") == anonymous_id


@settings(max_examples=40)
@given(person=_identifiers, token=_text, platform=st.sampled_from(["ios", "android"]))
def test_people_and_devices_are_documented(
    person: dict[str, str], token: str, platform: str
) -> None:
    for op in (
        ops.delete(person),
        ops.suppress(person),
        ops.unsuppress(person),
        ops.add_device(person, token, platform, attributes={"app_version": "1.2"}),
        ops.delete_device(person, token),
    ):
        assert_documented(op)


@settings(max_examples=40)
@given(
    to=_recipients,
    cc=st.none() | _recipients,
    bcc=st.none() | _recipients,
    headers=st.none() | st.dictionaries(st.from_regex(r"X-[A-Za-z]{1,8}", fullmatch=True),
                                        st.from_regex(r"[!-~]{1,10}", fullmatch=True), max_size=3),
    identifiers=st.none() | _identifiers.filter(lambda ids: "phone" not in ids),
)  # fmt: skip
def test_emails_are_documented(
    to: Any, cc: Any, bcc: Any, headers: dict[str, str] | None, identifiers: Any
) -> None:
    fields = {name: value for name, value in (("cc", cc), ("bcc", bcc)) if value is not None}
    if headers is not None:
        fields["headers"] = headers
    op = ops.send_email(
        to=to,
        identifiers=identifiers or {"id": "u1"},
        transactional_message_id=3,
        **fields,
    )
    assert_documented(op)
    body = op.v1_request().body
    assert body is not None
    for name, value in (("to", to), ("cc", cc), ("bcc", bcc)):
        if value is not None:
            assert body[name] == (value if isinstance(value, str) else ",".join(value))
    if headers is not None:
        assert json.loads(body["headers"]) == [{"name": k, "value": v} for k, v in headers.items()]


def assert_documented_v2(item: dict[str, Any]) -> None:
    for validator in (_batch_item(), path_validator("/api/v2/entity", "POST")):
        assert not _errors(validator, item), (item, _errors(validator, item))
    assert RELATIONSHIPS not in item.get("attributes", {}), item
