"""The service when its storage fails: 503 with a reason and nothing half-written, readiness
that says what is wrong, and delivery that resumes by itself.

``BreakableOutbox`` is the real SQLite outbox whose writes fail, while ``broken`` is set, the way
SQLite fails on a full disk (``sqlite3.OperationalError: database or disk is full``);
``tests/adversarial/test_disk_full.py`` does the same with a filesystem really filled up.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cio_relay.config import Settings
from cio_relay.emulator import EmulatorServer
from cio_relay.operations import Operation
from cio_relay.outbox.base import Lease
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.server import app as app_module
from cio_relay.server import create_app
from tests.delivery.test_dispatcher import ScriptedTrack
from tests.fixtures.delivery import emulator_settings, wait_for
from tests.fixtures.redis_server import DURABLE_ARGS, RedisServer
from tests.server.conftest import serve

DISK_FULL = "database or disk is full"


class BreakableOutbox(SqliteOutbox):
    """SQLite whose enqueues and leases raise while ``broken``."""

    broken = False

    def _check(self) -> None:
        if self.broken:
            raise sqlite3.OperationalError(DISK_FULL)

    def enqueue(self, ops: Sequence[Operation]) -> int:
        self._check()
        return super().enqueue(ops)

    def enqueue_nowait(self, ops: Sequence[Operation]) -> int | None:
        self._check()
        return super().enqueue_nowait(ops)

    def lease(self, limit: int, lease_seconds: float, *, now: float | None = None) -> list[Lease]:
        self._check()
        return super().lease(limit, lease_seconds, now=now)

    def ack(self, leases: Iterable[Lease]) -> None:
        self._check()
        super().ack(leases)


def _full_disk(*args: Any, **kwargs: Any) -> None:
    raise sqlite3.OperationalError(DISK_FULL)


@pytest.fixture
def breakable(tmp_path: Path) -> Iterator[BreakableOutbox]:
    box = BreakableOutbox(tmp_path / "outbox.db")
    yield box
    box.close()


Served = Callable[..., AbstractContextManager[str]]
AppFactory = Callable[..., Any]


def test_a_failing_outbox_answers_503_with_a_reason_and_stores_nothing(
    served: Served, breakable: BreakableOutbox, auth: dict[str, str]
) -> None:
    with served(outbox=breakable) as url, httpx.Client(base_url=url, headers=auth) as http:
        breakable.broken = True
        one = http.post("/v1/people/ada/events", json={"name": "signed_up"})
        many = http.post(
            "/v1/batch",
            json={
                "operations": [
                    {"type": "track", "person": "ada", "name": f"e{n}"} for n in range(3)
                ]
            },
        )
        breakable.broken = False
        assert breakable.depth().pending == 0
        again = http.post("/v1/people/ada/events", json={"name": "signed_up"})
    for refused in (one, many):
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        body = refused.json()
        assert body["error"] == "storage_unavailable"
        assert DISK_FULL in body["message"] and "nothing was stored" in body["message"]
    assert again.status_code == 202
    assert breakable.depth().pending == 1


def test_a_failing_idempotency_store_answers_503_and_a_retry_stores_once(
    make_app: AppFactory, breakable: BreakableOutbox, auth: dict[str, str], monkeypatch: Any
) -> None:
    app = make_app(outbox=breakable)
    store = app.state.service.idempotency
    with serve(app) as url, httpx.Client(base_url=url, headers=auth) as http:
        real_reserve = store.reserve
        monkeypatch.setattr(store, "reserve", _full_disk)
        headers = {"Idempotency-Key": "order-42"}
        refused = http.post("/v1/people/ada/events", json={"name": "paid"}, headers=headers)
        assert breakable.depth().pending == 0  # the claim failed first: nothing enqueued
        monkeypatch.setattr(store, "reserve", real_reserve)
        first = http.post("/v1/people/ada/events", json={"name": "paid"}, headers=headers)
        replay = http.post("/v1/people/ada/events", json={"name": "paid"}, headers=headers)
    assert refused.status_code == 503 and refused.json()["error"] == "storage_unavailable"
    assert "idempotency store" in refused.json()["message"]
    assert (first.status_code, replay.status_code) == (202, 202)
    assert first.json() == replay.json()
    assert breakable.depth().pending == 1


def test_a_claim_that_cannot_be_marked_done_still_answers_202_and_a_retry_reuses_its_ids(
    make_app: AppFactory, breakable: BreakableOutbox, auth: dict[str, str], monkeypatch: Any
) -> None:
    # The operations are durable once enqueued: answering 503 then would make a client without
    # the key send them again under new ids. The pending claim keeps the ids for a retry.
    app = make_app(outbox=breakable)
    store = app.state.service.idempotency
    with serve(app) as url, httpx.Client(base_url=url, headers=auth) as http:
        monkeypatch.setattr(store, "complete", _full_disk)
        headers = {"Idempotency-Key": "order-43"}
        first = http.post("/v1/people/ada/events", json={"name": "paid"}, headers=headers)
        retry = http.post("/v1/people/ada/events", json={"name": "paid"}, headers=headers)
    assert (first.status_code, retry.status_code) == (202, 202)
    assert first.json()["op_ids"] == retry.json()["op_ids"]
    assert breakable.depth().pending == 1


def _ready(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/readyz").json()
    return body


def test_readiness_reports_the_outage_and_delivery_resumes_by_itself(
    emulator: EmulatorServer, breakable: BreakableOutbox, tmp_path: Path, api_key: str
) -> None:
    settings = emulator_settings(emulator, "sqlite:///unused", api_keys=api_key, data_dir=tmp_path)
    app = create_app(settings, outbox=breakable, idempotency_path=tmp_path / "i.db")
    auth = {"Authorization": f"Bearer {api_key}"}
    with serve(app) as url, httpx.Client(base_url=url, headers=auth) as http:
        assert http.post("/v1/people/ada", json={"attributes": {"n": 1}}).status_code == 202
        assert wait_for(lambda: breakable.depth().pending == 0, 30)
        breakable.broken = True
        assert wait_for(
            lambda: _ready(url)["checks"]["workers"] == "unavailable: OperationalError", 30
        )
        assert httpx.get(f"{url}/readyz").status_code == 503
        breakable.broken = False
        assert http.post("/v1/people/ada", json={"attributes": {"n": 2}}).status_code == 202
        assert wait_for(lambda: _ready(url)["checks"]["workers"] == "ok", 30)
        assert wait_for(lambda: breakable.depth().pending == 0, 30)
        metrics = http.get("/metrics").text
    person = httpx.get(f"{emulator.url}/_emulator/people/ada").json()
    assert person["attributes"]["n"] == 2
    assert 'cio_relay_storage_errors_total{error="OperationalError",operation="lease"}' in metrics


def test_a_worker_that_stops_is_restarted_and_readiness_says_so_meanwhile(
    breakable: BreakableOutbox,
    tmp_path: Path,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "_RESTART_FIRST", 4.0)  # a window wide enough to look
    track = ScriptedTrack()
    starts = 0

    def flaky_client() -> ScriptedTrack:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise RuntimeError("a bug in the worker's start")
        return track

    settings = Settings(api_keys=api_key, data_dir=tmp_path, site_id="s", track_api_key="k")
    app = create_app(
        settings,
        outbox=breakable,
        idempotency_path=tmp_path / "i.db",
        worker_options={"track": flaky_client},
    )
    auth = {"Authorization": f"Bearer {api_key}"}
    with serve(app) as url, httpx.Client(base_url=url, headers=auth) as http:
        assert _ready(url)["checks"]["workers"] == "restarting"
        assert http.post("/v1/people/ada/events", json={"name": "e"}).status_code == 202
        assert wait_for(lambda: len(track.delivered_ids) == 1, 30)
        assert _ready(url)["checks"]["workers"] == "ok"
        metrics = http.get("/metrics").text
    assert starts == 2
    assert "cio_relay_worker_restarts_total 1.0" in metrics


def test_ingestion_over_redis_answers_503_while_redis_is_down_and_202_once_it_is_back(
    emulator: EmulatorServer,
    redis_server_factory: Callable[..., RedisServer],
    tmp_path: Path,
    api_key: str,
) -> None:
    redis = redis_server_factory(*DURABLE_ARGS)
    settings = emulator_settings(emulator, redis.url, api_keys=api_key, data_dir=tmp_path)
    app = create_app(settings, idempotency_path=tmp_path / "i.db")
    auth = {"Authorization": f"Bearer {api_key}"}
    with serve(app) as url, httpx.Client(base_url=url, headers=auth, timeout=30) as http:
        before = http.post("/v1/people/ada/events", json={"name": "before"})
        redis.kill()
        during = http.post("/v1/people/ada/events", json={"name": "during"})
        redis.restart()
        after = http.post("/v1/people/ada/events", json={"name": "after"})
        events = f"{emulator.url}/_emulator/events"
        assert wait_for(lambda: httpx.get(events).json()["total"] == 2, 30)
        delivered = httpx.get(events).json()["events"]
    assert (before.status_code, during.status_code, after.status_code) == (202, 503, 202)
    assert during.json()["error"] == "storage_unavailable"
    assert "ConnectionError" in during.json()["message"] and str(redis.port) not in during.text
    assert during.headers["retry-after"] == "1"
    assert sorted(event["name"] for event in delivered) == ["after", "before"]


def test_the_dashboard_answers_a_503_page_while_its_outbox_is_down(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path, api_key: str
) -> None:
    redis = redis_server_factory()
    settings = Settings(api_keys=api_key, data_dir=tmp_path, outbox=redis.url)
    app = create_app(settings, run_workers=False, idempotency_path=tmp_path / "i.db")
    auth = {"Authorization": f"Bearer {api_key}"}
    with serve(app) as url, httpx.Client(base_url=url, headers=auth, timeout=30) as http:
        up = http.get("/dashboard")
        redis.kill()
        pages = [http.get("/dashboard"), http.get("/dashboard/dead-letters")]
        action = http.post("/dashboard/dead-letters/replay", data={"all": "1"})
    assert up.status_code == 200
    for answer in (*pages, action):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert "the outbox is unavailable (ConnectionError)" in answer.text
        assert str(redis.port) not in answer.text
