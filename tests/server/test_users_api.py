"""The ``/v1/users`` routes of the ingestion API over real HTTP, and two-way preferences in the
running service: a signed subscription webhook updates what ``GET /v1/users/{id}`` answers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cio_relay import operations as ops
from cio_relay.config import Settings
from cio_relay.operations import Kind, Operation
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.redis import RedisOutbox
from cio_relay.server import create_app
from cio_relay.server.runner import prepare_service
from cio_relay.webhooks.signature import signature_headers
from tests.server.conftest import serve
from tests.sync.conftest import take_all
from tests.sync.test_preferences import preferences_changed_body as preferences_changed
from tests.webhooks.helpers import payload

Served = Callable[..., AbstractContextManager[str]]
SIGNING_KEY = "whsec-users-0123456789"


def _sent(op: Operation) -> dict[str, Any]:
    """The attributes an identify sends, without the relay's environment stamp."""
    return {k: v for k, v in op.payload["attributes"].items() if k != "_env"}


@pytest.fixture
def http(base_url: str, auth: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=auth, timeout=30) as client:
        yield client


def test_a_profile_sync_enqueues_what_changed_and_then_nothing(
    http: httpx.Client, outbox: Outbox
) -> None:
    first = http.put("/v1/users/u1", json={"attributes": {"plan": "pro", "seats": 3}})
    assert first.status_code == 202
    assert first.json()["enqueued"] is True
    [op] = take_all(outbox)
    assert first.json()["op_ids"] == [op.op_id]
    assert op.kind is Kind.IDENTIFY and _sent(op) == {"plan": "pro", "seats": 3}
    again = http.put("/v1/users/u1", json={"attributes": {"seats": 3, "plan": "pro"}})
    assert (again.status_code, again.json()) == (200, {"enqueued": False, "op_ids": []})
    changed = http.put("/v1/users/u1", json={"attributes": {"plan": "team"}})
    assert changed.status_code == 202
    [op] = take_all(outbox)
    assert _sent(op) == {"plan": "team", "seats": ""}  # seats cleared


def test_get_answers_the_local_state_with_preference_times(http: httpx.Client) -> None:
    assert http.get("/v1/users/u1").status_code == 404
    http.put("/v1/users/u1", json={"attributes": {"plan": "pro"}})
    before = time.time()
    answer = http.put("/v1/users/u1/preferences", json={"topics": {"7": False}})
    assert answer.status_code == 202 and len(answer.json()["op_ids"]) == 1
    state = http.get("/v1/users/u1")
    assert state.status_code == 200
    body = state.json()
    assert body["id"] == "u1" and body["attributes"] == {"plan": "pro"}
    assert body["topics"] == {"topic_7": False} and body["unsubscribed"] is None
    stamp = body["preference_times"]["topic_7"]
    assert stamp["source"] == "app" and stamp["at"] >= before


def test_delete_erases_at_customerio_and_forgets(http: httpx.Client, outbox: Outbox) -> None:
    http.put("/v1/users/u1", json={"attributes": {"plan": "pro"}})
    take_all(outbox)
    answer = http.delete("/v1/users/u1")
    assert answer.status_code == 202
    erased = take_all(outbox)
    assert [op.kind for op in erased] == [Kind.SUPPRESS, Kind.DELETE]
    assert answer.json() == {"enqueued": True, "op_ids": [op.op_id for op in erased]}
    assert http.get("/v1/users/u1").status_code == 404


def test_people_named_by_email_through_id_type(http: httpx.Client, outbox: Outbox) -> None:
    path = "/v1/users/bob@x.test"
    assert http.put(path, params={"id_type": "email"}, json={"attributes": {"a": 1}}).is_success
    [op] = take_all(outbox)
    assert op.person_key == "email:bob@x.test"
    assert http.get(path, params={"id_type": "email"}).json()["id"] == "email:bob@x.test"
    assert http.get(path).status_code == 404  # as an id, nobody is known by it
    phone = http.get("/v1/users/+15551234567", params={"id_type": "phone"})
    assert phone.status_code == 422 and phone.json()["field"] == "identifier"


def test_invalid_requests_name_the_field_as_the_other_routes(
    http: httpx.Client, outbox: Outbox
) -> None:
    missing = http.put("/v1/users/u1", json={})
    assert missing.status_code == 422
    assert missing.json()["field"] == "attributes"
    too_long = http.put("/v1/users/u1", json={"attributes": {"bio": "x" * 2000}})
    assert too_long.status_code == 422
    error = too_long.json()
    assert error["error"] == "limit_exceeded" and error["field"] == "attributes.bio"
    assert (error["limit"], error["size"]) == (1000, 2000)
    topic = http.put("/v1/users/u1/preferences", json={"topics": {"news": True}})
    assert topic.status_code == 422 and topic.json()["field"] == "topics"
    empty = http.put("/v1/users/u1/preferences", json={})
    assert empty.status_code == 422 and "nothing to update" in empty.json()["message"]
    unknown = http.put("/v1/users/u1/preferences", json={"unsubscribed": True, "x": 1})
    assert unknown.status_code == 422 and unknown.json()["field"] == "x"
    assert take_all(outbox) == []
    assert http.get("/v1/users/u1").status_code == 404  # nothing was recorded


def test_every_route_needs_the_bearer_key(base_url: str) -> None:
    with httpx.Client(base_url=base_url) as anonymous:
        answers = [
            anonymous.put("/v1/users/u1", json={"attributes": {}}),
            anonymous.put("/v1/users/u1/preferences", json={"unsubscribed": True}),
            anonymous.delete("/v1/users/u1"),
            anonymous.get("/v1/users/u1"),
        ]
    assert [a.status_code for a in answers] == [401] * 4


def test_other_methods_are_refused_as_the_router_would(http: httpx.Client) -> None:
    refused = http.post("/v1/users/u1", json={"attributes": {}})
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "DELETE, GET, PUT"
    assert http.get("/v1/users/u1/preferences").headers["Allow"] == "PUT"


def test_an_idempotency_key_replays_the_first_answer(http: httpx.Client, outbox: Outbox) -> None:
    keyed = {"Idempotency-Key": "prefs-1"}
    body = {"unsubscribed": True}
    first = http.put("/v1/users/u1/preferences", json=body, headers=keyed)
    replay = http.put("/v1/users/u1/preferences", json=body, headers=keyed)
    assert first.status_code == replay.status_code == 202
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(take_all(outbox)) == 1  # sent once
    other = http.put("/v1/users/u1/preferences", json={"unsubscribed": False}, headers=keyed)
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
    bad = http.delete("/v1/users/u1", headers={"Idempotency-Key": "no spaces"})
    assert bad.status_code == 422 and bad.json()["field"] == "Idempotency-Key"


def test_a_full_outbox_answers_503_and_records_nothing(
    served: Served, settings: Settings, auth: dict[str, str], outbox: Outbox
) -> None:
    outbox.enqueue([ops.identify("someone", {})])
    full = settings.model_copy(update={"outbox_max_depth": 1})
    with served(settings=full) as url, httpx.Client(base_url=url, headers=auth) as http:
        answers = [
            http.put("/v1/users/u1", json={"attributes": {"plan": "pro"}}),
            http.put("/v1/users/u1/preferences", json={"unsubscribed": True}),
            http.delete("/v1/users/u1"),
        ]
        assert http.get("/v1/users/u1").status_code == 404
    for answer in answers:
        assert answer.status_code == 503
        assert answer.json()["error"] == "outbox_full"
        assert int(answer.headers["Retry-After"]) >= 1
    assert outbox.depth().pending == 1


def test_a_redis_outbox_answers_501_naming_the_setting_and_says_so_once_at_start(
    settings: Settings,
    auth: dict[str, str],
    redis_outbox: RedisOutbox,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="cio_relay.server"):
        app = create_app(
            settings, outbox=redis_outbox, run_workers=False, idempotency_path=tmp_path / "i.db"
        )
    [warning] = [r.getMessage() for r in caplog.records if "user sync is off" in r.getMessage()]
    assert "subscription webhooks are not recorded" in warning and "CIO_RELAY_OUTBOX" in warning
    with serve(app) as url, httpx.Client(base_url=url, headers=auth) as http:
        answers = [
            http.put("/v1/users/u1", json={"attributes": {"plan": "pro"}}),
            http.put("/v1/users/u1/preferences", json={"unsubscribed": True}),
            http.delete("/v1/users/u1"),
            http.get("/v1/users/u1"),
        ]
    for answer in answers:
        assert answer.status_code == 501
        assert answer.json()["error"] == "user_sync_unavailable"
        assert "CIO_RELAY_OUTBOX" in answer.json()["message"]
    assert redis_outbox.depth().pending == 0


def test_a_signed_subscription_webhook_updates_the_local_preferences(
    settings: Settings, outbox: Outbox, auth: dict[str, str], tmp_path: Path
) -> None:
    with_keys = settings.model_copy(
        update={"webhook_signing_keys": [SecretStr(SIGNING_KEY)], "lake": str(tmp_path / "lake")}
    )
    app = create_app(
        with_keys,
        outbox=outbox,
        run_workers=False,
        webhooks=True,
        idempotency_path=tmp_path / "i.db",
    )
    at = int(time.time())
    body = payload(
        "email", "unsubscribed", timestamp=at, customer_id="u1", identifiers={"id": "u1"}
    )
    with serve(app) as url, httpx.Client(base_url=url, headers=auth) as http:
        http.put("/v1/users/u1", json={"attributes": {"plan": "pro"}})
        take_all(outbox)
        stored = httpx.post(
            f"{url}/webhooks/customerio",
            content=body,
            headers=signature_headers(SIGNING_KEY, body),
        )
        assert stored.json() == {"status": "stored"}
        app.state.service.webhooks.pipeline.drain()
        state = http.get("/v1/users/u1").json()
    assert state["unsubscribed"] is True
    assert state["preference_times"]["unsubscribed"] == {"at": at, "source": "webhook"}
    assert state["attributes"] == {"plan": "pro"}
    users = app.state.service.users.repository
    assert users is not None and users.get("u1").unsubscribed is True
    assert take_all(outbox) == []  # the change came from Customer.io: nothing echoed back


def test_cio_relay_run_records_subscription_webhooks_for_the_user_repository(
    tmp_path: Path,
) -> None:
    # The service as `cio-relay run` prepares it (sandbox mode: the webhook key is its own).
    settings = Settings(data_dir=tmp_path, outbox=f"sqlite:///{tmp_path}/outbox.db", api_keys=[])
    prepared = prepare_service(settings, host="127.0.0.1", port=0)
    try:
        [signing_key] = [k.get_secret_value() for k in prepared.settings.webhook_signing_keys]
        auth = {"Authorization": f"Bearer {prepared.generated_key}"}
        at = int(time.time())
        body = preferences_changed("u1", at, {"topic_3": False})
        with serve(prepared.app, prepared.sock) as url:
            stored = httpx.post(
                f"{url}/webhooks/customerio",
                content=body,
                headers=signature_headers(signing_key, body),
            )
            assert stored.json() == {"status": "stored"}
            prepared.app.state.service.webhooks.pipeline.drain()
            state = httpx.get(f"{url}/v1/users/u1", headers=auth).json()
    finally:
        prepared.close()
    assert state["topics"] == {"topic_3": False}
    assert state["preference_times"] == {"topic_3": {"at": at, "source": "webhook"}}
