"""The App API's template sends and reads over ``httpx.MockTransport``: the exact request each
method makes (method, path, query, body) and what it makes of the answer, through the sync and
the async shell."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from cio_relay.errors import PermanentError, RetryableError, ValidationError
from tests.customerio.test_clients import Recorder, app_call


@pytest.fixture(params=["sync", "async"])
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


QUEUED = {"delivery_id": "d1", "queued_at": 1700000000}

SENDS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "send_whatsapp": (
        lambda c: c.send_whatsapp(
            identifiers={"id": "u1"},
            transactional_message_id="order_shipped",
            to="+15551234567",
            message_data={"order": 7},
            tracked=True,
            language="pt-BR",
        ),
        "/v1/send/whatsapp",
        {
            "to": "+15551234567",
            "tracked": True,
            "language": "pt-BR",
            "identifiers": {"id": "u1"},
            "transactional_message_id": "order_shipped",
            "message_data": {"order": 7},
        },
    ),
    "send_in_app": (
        lambda c: c.send_in_app(
            identifiers={"email": "ada@x.test"}, transactional_message_id=44, send_at=1800000000
        ),
        "/v1/send/in_app",
        {
            "send_at": 1800000000,
            "identifiers": {"email": "ada@x.test"},
            "transactional_message_id": 44,
        },
    ),
    "send_inbox_message": (
        lambda c: c.send_inbox_message(
            identifiers={"cio_id": "a3000001"},
            transactional_message_id="welcome",
            queue_draft=True,
            disable_message_retention=False,
        ),
        "/v1/send/inbox_message",
        {
            "queue_draft": True,
            "disable_message_retention": False,
            "identifiers": {"cio_id": "a3000001"},
            "transactional_message_id": "welcome",
        },
    ),
}


@pytest.mark.parametrize("method", sorted(SENDS))
async def test_each_template_send_posts_its_documented_body(shell: str, method: str) -> None:
    call, path, body = SENDS[method]
    recorder = Recorder(httpx.Response(200, json=QUEUED))
    assert await app_call(shell, recorder, call) == QUEUED
    sent = recorder.last
    assert (sent.method, sent.url.path, sent.url.query) == ("POST", path, b"")
    assert orjson.loads(sent.content) == body
    assert sent.headers["authorization"] == "Bearer app-key-1"


READS: dict[str, tuple[Any, str, bytes, dict[str, Any]]] = {
    "trigger status": (
        lambda c: c.broadcast_trigger(2, "13"),
        "/v1/campaigns/2/triggers/13",
        b"",
        {"id": 13, "broadcast_id": 2, "created_at": 1552341937, "processed_at": 1552341999},
    ),
    "trigger errors, first page": (
        lambda c: c.broadcast_trigger_errors(2, 13),
        "/v1/campaigns/2/triggers/13/errors",
        b"",
        {"errors": ["id 'u9' not found"], "next": "abc"},
    ),
    "trigger errors, a later page": (
        lambda c: c.broadcast_trigger_errors("2", 13, start="abc+/=", limit=50),
        "/v1/campaigns/2/triggers/13/errors",
        b"start=abc%2B%2F%3D&limit=50",
        {"errors": [], "next": ""},
    ),
    "attributes by id": (
        lambda c: c.customer_attributes("u 1/2"),
        "/v1/customers/u%201%2F2/attributes",
        b"id_type=id",
        {"customer": {"id": "u 1/2", "attributes": {"plan": "pro"}}},
    ),
    "attributes by phone": (
        lambda c: c.customer_attributes({"phone": "+14155552671"}),
        "/v1/customers/%2B14155552671/attributes",
        b"id_type=phone",
        {"customer": {"id": None, "attributes": {"phone": "+14155552671"}}},
    ),
    "attributes by cio_id": (
        lambda c: c.customer_attributes({"cio_id": "a3000001"}),
        "/v1/customers/a3000001/attributes",
        b"id_type=cio_id",
        {"customer": {"id": "u1", "attributes": {}}},
    ),
}


@pytest.mark.parametrize("case", sorted(READS))
async def test_each_read_gets_its_documented_path_and_query(shell: str, case: str) -> None:
    call, path, query, answer = READS[case]
    recorder = Recorder(httpx.Response(200, json=answer))
    assert await app_call(shell, recorder, call) == answer
    sent = recorder.last
    assert (sent.method, sent.url.raw_path.split(b"?")[0].decode(), sent.url.query) == (
        "GET",
        path,
        query,
    )
    assert sent.content == b"" and "content-type" not in sent.headers


async def test_customers_by_email_percent_encodes_the_address_and_returns_the_results(
    shell: str,
) -> None:
    found = [{"id": "u1", "email": "jane+news@x.test", "cio_id": "a3000001"}]
    recorder = Recorder(httpx.Response(200, json={"results": found}))
    assert await app_call(shell, recorder, lambda c: c.customers_by_email("jane+news@x.test")) == (
        found
    )
    # An unencoded '+' reads as a space and finds no one, without an error (the documents).
    assert recorder.last.url.raw_path == b"/v1/customers?email=jane%2Bnews%40x.test"


@pytest.mark.parametrize("answer", [{}, {"results": None}, {"results": ["not a person"]}])
async def test_customers_by_email_without_results_is_an_empty_list(
    shell: str, answer: dict[str, Any]
) -> None:
    recorder = Recorder(httpx.Response(200, json=answer))
    assert await app_call(shell, recorder, lambda c: c.customers_by_email("a@x.test")) == []


async def test_a_person_who_does_not_exist_is_none(shell: str) -> None:
    recorder = Recorder(httpx.Response(404, json={"errors": [{"detail": "not found"}]}))
    assert await app_call(shell, recorder, lambda c: c.customer_attributes("ghost")) is None


async def test_a_trigger_that_does_not_exist_is_a_permanent_error(shell: str) -> None:
    recorder = Recorder(httpx.Response(404, json={"errors": [{"detail": "not found"}]}))
    with pytest.raises(PermanentError) as caught:
        await app_call(shell, recorder, lambda c: c.broadcast_trigger(1, 3))
    assert caught.value.status == 404
    assert caught.value.endpoint == "GET /v1/campaigns/1/triggers/3"


async def test_other_failures_of_a_lookup_still_raise(shell: str) -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "2"}))
    with pytest.raises(RetryableError) as caught:
        await app_call(shell, recorder, lambda c: c.customer_attributes("u1"))
    assert caught.value.retry_after == 2.0
    recorder = Recorder(httpx.Response(400, json={"meta": {"error": "id_type not enabled"}}))
    with pytest.raises(PermanentError, match="id_type not enabled"):
        await app_call(shell, recorder, lambda c: c.customer_attributes({"phone": "+1415555"}))


BAD_CALLS: dict[str, tuple[Any, str]] = {
    "trigger id text": (lambda c: c.broadcast_trigger(1, "3a"), "trigger_id"),
    "negative broadcast": (lambda c: c.broadcast_trigger(-1, 3), "broadcast_id"),
    "bool trigger": (lambda c: c.broadcast_trigger(1, True), "trigger_id"),
    "zero limit": (lambda c: c.broadcast_trigger_errors(1, 3, limit=0), "limit"),
    "empty start": (lambda c: c.broadcast_trigger_errors(1, 3, start=""), "start"),
    "not an email": (lambda c: c.customers_by_email("ada"), "email"),
    "two identifiers": (
        lambda c: c.customer_attributes({"id": "u", "email": "a@x.test"}),
        "person",
    ),
    "unknown id type": (lambda c: c.customer_attributes({"anonymous_id": "x"}), "person"),
    "blank id": (lambda c: c.customer_attributes(" "), "person.id"),
    "whatsapp without to": (
        lambda c: c.send_whatsapp(identifiers={"id": "u"}, transactional_message_id=1, to=""),
        "to",
    ),
    "in-app without a person": (
        lambda c: c.send_in_app(identifiers={}, transactional_message_id=1),
        "identifiers",
    ),
    "inbox flag as text": (
        lambda c: c.send_inbox_message(
            identifiers={"id": "u"}, transactional_message_id=1, queue_draft="false"
        ),
        "queue_draft",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
async def test_bad_arguments_are_refused_before_any_request(shell: str, case: str) -> None:
    call, field = BAD_CALLS[case]
    recorder = Recorder()
    with pytest.raises(ValidationError) as caught:
        await app_call(shell, recorder, call)
    assert caught.value.field == field
    assert recorder.requests == []
