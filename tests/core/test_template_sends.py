"""The template sends (WhatsApp, in-app, inbox): what each operation says, what is refused
before it is stored, and that an ambiguous failure dead-letters them as it does every send."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cio_relay import AsyncRelay, Relay, Settings
from cio_relay import operations as ops
from cio_relay.customerio import AsyncAppClient
from cio_relay.delivery.dispatcher import Dispatcher, DispatcherConfig
from cio_relay.delivery.retry import RetryPolicy
from cio_relay.errors import ValidationError
from cio_relay.operations import Api, Kind, Operation
from cio_relay.operations.kinds import NON_IDEMPOTENT_KINDS, TRANSACTIONAL_KINDS
from cio_relay.outbox.memory import MemoryOutbox

TEMPLATE_SENDS = (Kind.SEND_WHATSAPP, Kind.SEND_IN_APP, Kind.SEND_INBOX_MESSAGE)


def _built(kind: Kind, **options: Any) -> Operation:
    base: dict[str, Any] = {"identifiers": {"id": "u1"}, "transactional_message_id": 7}
    if kind is Kind.SEND_WHATSAPP:
        base["to"] = "+15551234567"
    builder = getattr(ops, kind.value)
    op: Operation = builder(**base, **options)
    return op


def test_template_sends_are_transactional_and_never_blindly_retried() -> None:
    for kind in TEMPLATE_SENDS:
        op = _built(kind)
        assert kind in TRANSACTIONAL_KINDS and kind in NON_IDEMPOTENT_KINDS
        assert (op.api, op.idempotent, op.v2_item()) == (Api.TRANSACTIONAL, False, None)
        assert op.person_key == "id:u1"


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        (Kind.SEND_WHATSAPP, "/v1/send/whatsapp"),
        (Kind.SEND_IN_APP, "/v1/send/in_app"),
        (Kind.SEND_INBOX_MESSAGE, "/v1/send/inbox_message"),
    ],
)
def test_each_posts_the_template_the_person_and_only_the_options_given(
    kind: Kind, path: str
) -> None:
    when = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    op = _built(kind, message_data={"code": "1234"}, send_at=when, language="fr", queue_draft=False)
    request = op.v1_request()
    assert (request.api, request.method, request.path) == (Api.TRANSACTIONAL, "POST", path)
    expected: dict[str, Any] = {
        "send_at": int(when.timestamp()),
        "language": "fr",
        "queue_draft": False,
        "identifiers": {"id": "u1"},
        "transactional_message_id": 7,
        "message_data": {"code": "1234"},
    }
    if kind is Kind.SEND_WHATSAPP:
        expected["to"] = "+15551234567"
    assert request.body == expected


REFUSED: dict[str, tuple[Kind, dict[str, Any], str]] = {
    "no person": (Kind.SEND_IN_APP, {"identifiers": {}}, "identifiers"),
    "two identifiers": (
        Kind.SEND_INBOX_MESSAGE,
        {"identifiers": {"id": "u", "email": "a@x.test"}},
        "identifiers",
    ),
    "no template": (
        Kind.SEND_INBOX_MESSAGE,
        {"transactional_message_id": ""},
        "transactional_message_id",
    ),
    "whatsapp without to": (Kind.SEND_WHATSAPP, {"to": " "}, "to"),
    "whatsapp to not E.164": (Kind.SEND_WHATSAPP, {"to": "555-1234"}, "to"),
    "flag as text": (Kind.SEND_WHATSAPP, {"tracked": "yes"}, "tracked"),
    "empty language": (Kind.SEND_IN_APP, {"language": ""}, "language"),
    "naive send_at": (Kind.SEND_IN_APP, {"send_at": datetime(2027, 1, 1)}, "send_at"),
    "data not an object": (Kind.SEND_WHATSAPP, {"message_data": ["a"]}, "message_data"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_customer_io_would_refuse_is_refused_naming_the_field(case: str) -> None:
    kind, override, field = REFUSED[case]
    arguments: dict[str, Any] = {"identifiers": {"id": "u1"}, "transactional_message_id": 7}
    if kind is Kind.SEND_WHATSAPP:
        arguments["to"] = "+15551234567"
    arguments.update(override)
    with pytest.raises(ValidationError) as caught:
        getattr(ops, kind.value)(**arguments)
    assert caught.value.field == field


def test_relay_and_async_relay_store_each_in_their_environment_with_the_given_op_id() -> None:
    op_id = ops.new_op_id()
    relay = Relay(Settings(env="staging"), outbox=MemoryOutbox())
    assert relay.send_in_app(identifiers={"id": "u1"}, transactional_message_id=1, op_id=op_id) == (
        op_id
    )
    [lease] = relay.outbox.lease(10, 60.0)
    assert (lease.op.kind, lease.op.env) == (Kind.SEND_IN_APP, "staging")


async def test_async_relay_stores_a_whatsapp_send() -> None:
    relay = AsyncRelay(Settings(env="production"), outbox=MemoryOutbox())
    op_id = await relay.send_whatsapp(
        identifiers={"email": "a@x.test"}, transactional_message_id="otp", to="{{customer.phone}}"
    )
    [lease] = relay.outbox.lease(10, 60.0)
    assert (lease.op.op_id, lease.op.kind) == (op_id, Kind.SEND_WHATSAPP)
    assert lease.op.payload["to"] == "{{customer.phone}}"
    await relay.aclose()


@pytest.mark.parametrize("kind", TEMPLATE_SENDS)
async def test_an_ambiguous_failure_dead_letters_the_send_after_one_request(kind: Kind) -> None:
    outbox = MemoryOutbox()
    outbox.enqueue([_built(kind)])
    sent: list[httpx.Request] = []

    def read_timeout(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise httpx.ReadTimeout("timed out after the request was written")

    app = AsyncAppClient("app-key", transport=httpx.MockTransport(read_timeout))
    dispatcher = Dispatcher(
        outbox,
        None,
        app,
        policy=RetryPolicy(base=0.001, cap=0.01, max_attempts=5),
        config=DispatcherConfig(idle_wait=0.001),
    )
    stats = await dispatcher.drain(timeout=10)
    await app.aclose()
    assert len(sent) == 1 and sent[0].url.path == f"/v1/send/{kind.value.removeprefix('send_')}"
    [dead] = outbox.list_dead()
    assert (dead.op.kind, dead.reason.value, stats.retried) == (kind, "ambiguous", 0)
