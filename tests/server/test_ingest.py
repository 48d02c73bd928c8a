"""The ingestion API over real HTTP: 202 after the durable write, idempotency, errors."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from cio_relay.config import Settings
from cio_relay.operations import Kind, Operation
from cio_relay.outbox.base import Outbox

# (method, path, body, the kinds the request stores)
ENDPOINTS: list[tuple[str, str, Any, list[Kind]]] = [
    ("POST", "/v1/people/u-1", {"attributes": {"plan": "pro"}}, [Kind.IDENTIFY]),
    ("POST", "/v1/people/ada%40example.com?id_type=email", None, [Kind.IDENTIFY]),
    ("DELETE", "/v1/people/u-2", None, [Kind.DELETE]),
    (
        "POST",
        "/v1/people/u-3/events",
        {"name": "order_completed", "data": {"total": 42}},
        [Kind.TRACK],
    ),
    ("POST", "/v1/people/u-4/events", {"name": "https://x.io/a", "type": "page"}, [Kind.PAGE]),
    ("POST", "/v1/events", {"anonymous_id": "anon-1", "name": "visited"}, [Kind.TRACK_ANONYMOUS]),
    ("POST", "/v1/people/u-5/suppress", None, [Kind.SUPPRESS]),
    ("POST", "/v1/people/u-6/unsuppress", None, [Kind.UNSUPPRESS]),
    (
        "POST",
        "/v1/transactional/email",
        {
            "to": "ada@example.com",
            "transactional_message_id": "welcome",
            "identifiers": {"id": "u-7"},
        },
        [Kind.SEND_EMAIL],
    ),
    (
        "POST",
        "/v1/broadcasts/42/triggers",
        {"data": {"sale": True}, "ids": ["u-8"]},
        [Kind.TRIGGER_BROADCAST],
    ),
    (
        "POST",
        "/v1/batch",
        {
            "operations": [
                {"type": "identify", "person": "u-9", "attributes": {"plan": "free"}},
                {"type": "track", "person": {"email": "bo@example.com"}, "name": "signed_up"},
                {"type": "delete", "person": "u-10"},
                {"type": "track_anonymous", "anonymous_id": "anon-2", "name": "x"},
                {"type": "send_email", "to": "c@example.com", "transactional_message_id": 3},
                {"type": "trigger_broadcast", "broadcast_id": 7},
            ]
        },
        [
            Kind.IDENTIFY,
            Kind.TRACK,
            Kind.DELETE,
            Kind.TRACK_ANONYMOUS,
            Kind.SEND_EMAIL,
            Kind.TRIGGER_BROADCAST,
        ],
    ),
]


def _stored(outbox: Outbox) -> dict[str, Operation]:
    """Every pending operation by op id (one lease per person; these tests use distinct people)."""
    leases = outbox.lease(10_000, 60)
    return {lease.op.op_id: lease.op for lease in leases}


@pytest.mark.parametrize(
    ("method", "path", "body", "kinds"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS]
)
def test_every_endpoint_answers_202_with_op_ids_after_storing_them(
    client: httpx.Client,
    auth: dict[str, str],
    outbox: Outbox,
    method: str,
    path: str,
    body: Any,
    kinds: list[Kind],
) -> None:
    response = client.request(method, path, json=body, headers=auth)
    assert response.status_code == 202, response.text
    op_ids = response.json()["op_ids"]
    assert len(op_ids) == len(kinds)
    stored = _stored(outbox)
    assert [stored[op_id].kind for op_id in op_ids] == kinds


def test_stored_operation_carries_the_request(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    response = client.post(
        "/v1/people/ada%40example.com/events?id_type=email",
        json={"name": "order_completed", "data": {"total": 42}, "timestamp": 1_700_000_000},
        headers=auth,
    )
    (op_id,) = response.json()["op_ids"]
    op = _stored(outbox)[op_id]
    assert op.identifiers == {"email": "ada@example.com"}
    assert op.payload["name"] == "order_completed"
    assert op.payload["data"]["total"] == 42
    assert op.payload["timestamp"] == 1_700_000_000


def test_same_idempotency_key_twice_answers_the_same_op_ids_and_stores_once(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    headers = {**auth, "Idempotency-Key": "order-77"}
    body = {"to": "ada@example.com", "transactional_message_id": "receipt"}
    first = client.post("/v1/transactional/email", json=body, headers=headers)
    second = client.post("/v1/transactional/email", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["op_ids"] == second.json()["op_ids"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert outbox.depth().pending == 1


def test_idempotency_key_replays_even_after_the_operation_was_delivered(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    headers = {**auth, "Idempotency-Key": "k-delivered"}
    first = client.post("/v1/people/u-1/events", json={"name": "paid"}, headers=headers)
    outbox.ack(outbox.lease(10, 60))  # delivered: the outbox forgets the op id
    assert outbox.depth().pending == 0
    second = client.post("/v1/people/u-1/events", json={"name": "paid"}, headers=headers)
    assert second.json()["op_ids"] == first.json()["op_ids"]
    assert outbox.depth().pending == 0


def test_same_idempotency_key_with_a_different_body_is_refused(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    headers = {**auth, "Idempotency-Key": "k-1"}
    assert (
        client.post("/v1/people/u-1/events", json={"name": "a"}, headers=headers).status_code == 202
    )
    reused = client.post("/v1/people/u-1/events", json={"name": "b"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"
    assert reused.json()["field"] == "Idempotency-Key"
    assert outbox.depth().pending == 1


def test_idempotency_keys_belong_to_one_api_key(
    make_app: Callable[..., Any], settings: Settings, outbox: Outbox, api_key: str
) -> None:
    from tests.server.conftest import serve

    both = settings.model_copy(
        update={"api_keys": [*settings.api_keys, _secret("other-key-123456")]}
    )
    with serve(make_app(settings=both)) as url, httpx.Client(base_url=url) as http:
        mine = http.post(
            "/v1/people/u-1",
            json={},
            headers={"Authorization": f"Bearer {api_key}", "Idempotency-Key": "k"},
        )
        theirs = http.post(
            "/v1/people/u-1",
            json={},
            headers={"Authorization": "Bearer other-key-123456", "Idempotency-Key": "k"},
        )
    assert mine.json()["op_ids"] != theirs.json()["op_ids"]


def test_concurrent_requests_with_one_idempotency_key_store_one_operation(
    base_url: str, auth: dict[str, str], outbox: Outbox
) -> None:
    headers = {**auth, "Idempotency-Key": "race"}

    def send(_: int) -> list[str]:
        with httpx.Client(base_url=base_url) as http:
            response = http.post("/v1/broadcasts/5/triggers", json={}, headers=headers)
            assert response.status_code == 202
            return list(response.json()["op_ids"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(16)))
    assert len({tuple(a) for a in answers}) == 1
    assert outbox.depth().pending == 1


def test_malformed_idempotency_key_is_refused(client: httpx.Client, auth: dict[str, str]) -> None:
    response = client.post(
        "/v1/people/u-1", json={}, headers={**auth, "Idempotency-Key": "has space"}
    )
    assert response.status_code == 422
    assert response.json()["field"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("path", "body", "field", "limit", "size"),
    [
        ("/v1/people/u-1/events", {"name": "n" * 101}, "name", 100, 101),
        (
            "/v1/people/u-1/events",
            {"name": "ok", "data": {"blob": "x" * 100_000}},
            "data",
            100_000,
            100_032,  # with the "_env" stamp the relay adds to event data
        ),
        ("/v1/people/u-1", {"attributes": {"bio": "b" * 1001}}, "attributes.bio", 1000, 1001),
        ("/v1/people/" + "i" * 151, {}, "identifier.id", 150, 151),
        (
            "/v1/transactional/email",
            {"to": [f"p{i}@example.com" for i in range(16)], "transactional_message_id": 1},
            "to",
            15,
            16,
        ),
        (
            "/v1/batch",
            {
                "operations": [
                    {"type": "identify", "person": "a"},
                    {"type": "track", "person": "b", "name": "n" * 120},
                ]
            },
            "operations[1].name",
            100,
            120,
        ),
    ],
    ids=["event-name", "event-data", "attribute", "identifier", "recipients", "batch-item"],
)
def test_limits_are_422_naming_field_limit_and_size(
    client: httpx.Client,
    auth: dict[str, str],
    outbox: Outbox,
    path: str,
    body: Any,
    field: str,
    limit: int,
    size: int,
) -> None:
    response = client.post(path, json=body, headers=auth)
    assert response.status_code == 422
    error = response.json()
    assert (error["error"], error["field"], error["limit"], error["size"]) == (
        "limit_exceeded",
        field,
        limit,
        size,
    )
    assert outbox.depth().pending == 0  # a batch is all or nothing


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/people/u-1/events", {"data": {}}, "name"),
        ("/v1/people/u-1/events", {"name": "x", "data": [1, 2]}, "data"),
        ("/v1/people/u-1/events", {"name": "x", "timestamp": -5}, "timestamp"),
        ("/v1/people/u-1", {"attributes": {}, "plan": "pro"}, "plan"),
        ("/v1/people/u-1?id_type=fax", {}, "id_type"),
        ("/v1/batch", {"operations": []}, "operations"),
        (
            "/v1/batch",
            {"operations": [{"type": "identify", "person": {"id": "a", "email": "b"}}]},
            "operations[0].person",
        ),
        ("/v1/broadcasts/abc/triggers", {}, "broadcast_id"),
        ("/v1/broadcasts/1/triggers", {"ids": ["a"], "emails": ["b"]}, "audience"),
    ],
)
def test_malformed_bodies_are_422_naming_the_field(
    client: httpx.Client, auth: dict[str, str], path: str, body: Any, field: str
) -> None:
    response = client.post(path, json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_body_that_is_not_json_is_422(client: httpx.Client, auth: dict[str, str]) -> None:
    response = client.post("/v1/people/u-1/events", content=b"{not json", headers=auth)
    assert response.status_code == 422
    assert response.json()["field"] == "body"


def test_body_over_the_cap_is_413(
    served: Callable[..., AbstractContextManager[str]], settings: Settings, auth: dict[str, str]
) -> None:
    small = settings.model_copy(update={"api_max_body": 1000})
    with served(settings=small) as url, httpx.Client(base_url=url) as http:
        declared = http.post(
            "/v1/people/u-1/events", json={"name": "x", "data": {"b": "x" * 2000}}, headers=auth
        )

        def chunks() -> Any:  # no Content-Length: the cap applies while streaming
            yield b'{"name": "x", "data": {"b": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}}'

        streamed = http.post("/v1/people/u-1/events", content=chunks(), headers=auth)
    assert declared.status_code == streamed.status_code == 413
    assert declared.json()["limit"] == 1000
    assert declared.json()["size"] > 1000


def test_outbox_past_its_maximum_depth_answers_503_with_retry_after(
    served: Callable[..., AbstractContextManager[str]],
    settings: Settings,
    auth: dict[str, str],
    outbox: Outbox,
) -> None:
    from cio_relay import operations as ops

    outbox.enqueue([ops.identify(f"p-{i}", {}) for i in range(3)])
    full = settings.model_copy(update={"outbox_max_depth": 3})
    with served(settings=full) as url, httpx.Client(base_url=url) as http:
        response = http.post("/v1/people/u-1/events", json={"name": "x"}, headers=auth)
        keyed = http.post("/v1/people/u-1", json={}, headers={**auth, "Idempotency-Key": "k"})
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"] == "outbox_full"
    assert keyed.status_code == 503
    assert outbox.depth().pending == 3  # nothing was half-written or silently dropped


def test_refused_idempotency_key_is_free_again(
    served: Callable[..., AbstractContextManager[str]],
    settings: Settings,
    auth: dict[str, str],
    outbox: Outbox,
) -> None:
    from cio_relay import operations as ops

    outbox.enqueue([ops.identify("p", {})])
    headers = {**auth, "Idempotency-Key": "k-503"}
    full = settings.model_copy(update={"outbox_max_depth": 1})
    with served(settings=full) as url, httpx.Client(base_url=url) as http:
        assert http.post("/v1/people/u-1", json={}, headers=headers).status_code == 503
    outbox.ack(outbox.lease(10, 60))
    with served() as url, httpx.Client(base_url=url) as http:
        retried = http.post("/v1/people/u-1", json={}, headers=headers)
    assert retried.status_code == 202
    assert "Idempotent-Replayed" not in retried.headers


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong", "basic", "empty"],
)
def test_without_a_valid_key_401_says_nothing_more(
    client: httpx.Client, outbox: Outbox, headers: dict[str, str]
) -> None:
    response = client.post("/v1/people/u-1", json={}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "message": "unauthorized"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert outbox.depth().pending == 0


def test_request_id_is_echoed_or_made_up(client: httpx.Client, auth: dict[str, str]) -> None:
    given = client.post("/v1/people/u-1", json={}, headers={**auth, "X-Request-Id": "req-123"})
    made = client.post("/v1/people/u-1", json={}, headers=auth)
    injected = client.post("/v1/people/u-1", json={}, headers={**auth, "X-Request-Id": "a b\tc"})
    assert given.headers["X-Request-Id"] == "req-123"
    assert len(made.headers["X-Request-Id"]) == 16
    assert injected.headers["X-Request-Id"] != "a b\tc"


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


# --- odd input (issue 11): refused with a 422 naming the field, nothing stored -----------------


_BATCH_BROADCAST = b'{"operations": [{"type": "trigger_broadcast", "broadcast_id": %s}]}'


@pytest.mark.parametrize(
    ("path", "content", "field"),
    [
        ("/v1/broadcasts/%C2%B2/triggers", b"{}", "broadcast_id"),  # "²": str.isdigit() is true
        ("/v1/broadcasts/%D9%A1%D9%A2/triggers", b"{}", "broadcast_id"),  # Arabic-Indic "١٢"
        ("/v1/broadcasts/" + "1" * 5000 + "/triggers", b"{}", "broadcast_id"),  # int() refuses
        ("/v1/batch", _BATCH_BROADCAST % '"²"'.encode(), "operations[0].broadcast_id"),
        ("/v1/batch", _BATCH_BROADCAST % (b"9" * 400), "operations[0].broadcast_id"),
        ("/v1/batch", _BATCH_BROADCAST % (b"9" * 5000), "body"),  # past what the parser reads
    ],
    ids=[
        "superscript",
        "arabic-indic",
        "5000-digits",
        "batch-superscript",
        "batch-400-digit-int",
        "batch-5000-digit-int",
    ],
)
def test_broadcast_ids_that_are_not_ascii_digits_are_422_not_500(
    client: httpx.Client,
    auth: dict[str, str],
    outbox: Outbox,
    path: str,
    content: bytes,
    field: str,
) -> None:
    _refused_naming(client.post(path, content=content, headers=auth), field, outbox)


def _refused_naming(response: httpx.Response, field: str, outbox: Outbox) -> None:
    """A 422 naming ``field``, and nothing stored."""
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert outbox.depth().pending == 0


@pytest.mark.parametrize("raw", ["%ff", "%fe", "caf%E9"])
def test_a_path_id_that_is_not_utf8_is_422_naming_id_not_one_shared_person(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox, raw: str
) -> None:
    for method, path, body in [
        ("POST", f"/v1/people/{raw}/events", {"name": "x"}),
        ("POST", f"/v1/people/{raw}", {}),
        ("DELETE", f"/v1/people/{raw}", None),
        ("POST", f"/v1/people/{raw}/suppress", None),
        ("POST", f"/v1/broadcasts/{raw}/triggers", {}),
    ]:
        response = client.request(method, path, json=body, headers=auth)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["field"] == "id"
    assert outbox.depth().pending == 0


def test_a_utf8_path_id_is_taken_as_sent(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    response = client.post("/v1/people/caf%C3%A9/events", json={"name": "x"}, headers=auth)
    assert response.status_code == 202
    assert _stored(outbox)[response.json()["op_ids"][0]].identifiers == {"id": "café"}


def test_an_id_with_an_encoded_slash_cannot_reach_another_route(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    # Decoded, /v1/people/a%2Fevents is /v1/people/a/events: an event for person "a".
    response = client.post("/v1/people/a%2Fevents", json={"name": "x"}, headers=auth)
    assert response.status_code == 422
    assert response.json()["field"] == "id"
    assert outbox.depth().pending == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/people/%2E%2E/events", {"name": "x"}, "identifier.id"),
        ("POST", "/v1/people/%2E", {}, "identifier.id"),
        ("DELETE", "/v1/people/%2E%2E", None, "identifier.id"),
        ("POST", "/v1/people/%2E%2E?id_type=email", {}, "identifier.email"),
        (
            "POST",
            "/v1/batch",
            {"operations": [{"type": "track", "person": "..", "name": "x"}]},
            "operations[0].identifier.id",
        ),
    ],
)
def test_dot_ids_are_refused_before_they_reach_the_outbox(
    client: httpx.Client,
    auth: dict[str, str],
    outbox: Outbox,
    method: str,
    path: str,
    body: Any,
    field: str,
) -> None:
    response = client.request(method, path, json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert outbox.depth().pending == 0


@pytest.mark.parametrize(
    ("path", "content", "field"),
    [
        ("/v1/people/u-1/events", b'{"name": "x", "data": {"total": NaN}}', "data.total"),
        ("/v1/people/u-1/events", b'{"name": "x", "data": {"a": [1, Infinity]}}', "data.a[1]"),
        ("/v1/people/u-1/events", b'{"name": "x", "data": {"big": 1e400}}', "data.big"),
        ("/v1/people/u-1", b'{"attributes": {"score": -Infinity}}', "attributes.score"),
        (
            "/v1/transactional/email",
            b'{"to": "a@example.com", "transactional_message_id": 1,'
            b' "message_data": {"price": NaN}}',
            "message_data.price",
        ),
        ("/v1/broadcasts/3/triggers", b'{"data": {"x": {"y": NaN}}}', "data.x.y"),
        (
            "/v1/batch",
            b'{"operations": [{"type": "identify", "person": "a"},'
            b' {"type": "identify", "person": "b"}, {"type": "identify", "person": "c"},'
            b' {"type": "track", "person": "d", "name": "n", "data": {"x": NaN}}]}',
            "operations[3].data.x",
        ),
    ],
    ids=["nan", "nested-infinity", "1e400", "attribute", "message-data", "broadcast", "batch"],
)
def test_non_finite_numbers_are_422_naming_the_field_and_nothing_is_stored(
    client: httpx.Client,
    auth: dict[str, str],
    outbox: Outbox,
    path: str,
    content: bytes,
    field: str,
) -> None:
    response = client.post(path, content=content, headers=auth)
    _refused_naming(response, field, outbox)
    assert "finite" in response.json()["message"]


def test_json_null_is_still_accepted_and_kept(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox
) -> None:
    body = {"name": "x", "data": {"coupon": None, "note": "null"}}
    response = client.post("/v1/people/u-1/events", json=body, headers=auth)
    assert response.status_code == 202
    stored = _stored(outbox)[response.json()["op_ids"][0]]
    assert (stored.payload["data"]["coupon"], stored.payload["data"]["note"]) == (None, "null")


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"X-Foo": "a\r\nBcc: someone@evil.example"}, "headers.X-Foo"),
        ({"X-Foo": "line\nbreak"}, "headers.X-Foo"),
        ({"X-Foo": "nul\x00"}, "headers.X-Foo"),
        ({"X-Foo\r\nBcc": "x"}, "headers"),
        ({"X Foo": "x"}, "headers"),
    ],
)
def test_email_headers_that_could_inject_another_header_are_refused(
    client: httpx.Client, auth: dict[str, str], outbox: Outbox, headers: Any, field: str
) -> None:
    body = {"to": "a@example.com", "transactional_message_id": 1, "headers": headers}
    response = client.post("/v1/transactional/email", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert outbox.depth().pending == 0


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"type": "identify", "person": "a", "unknown_field": 1}, "operations[0].unknown_field"),
        ({"type": "identify", "person": 5}, "operations[0].person"),
        ({"type": "identify", "person": {}}, "operations[0].person"),
        ({"type": "track", "person": "a"}, "operations[0].name"),
        ({"type": "send_email", "to": 5}, "operations[0].to"),
        (
            {"type": "send_email", "to": "a", "identifiers": {"id": 3}},
            "operations[0].identifiers.id",
        ),
        ({"type": "nope"}, "operations[0]"),
    ],
)
def test_a_malformed_batch_item_is_named_by_its_place_not_by_union_tags(
    client: httpx.Client, auth: dict[str, str], item: Any, field: str
) -> None:
    response = client.post("/v1/batch", json={"operations": [item]}, headers=auth)
    assert response.status_code == 422
    assert response.json()["field"] == field
