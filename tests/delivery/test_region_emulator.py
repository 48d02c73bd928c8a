"""A worker against an emulator whose account lives in the other region (issue 13): it refuses
to start, or (App API only, nothing to check with) pauses; operations stay pending, readiness
and the metrics say why, nothing is dead-lettered, nothing reaches the account."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cio_relay import operations as ops
from cio_relay.customerio import AsyncAppClient
from cio_relay.delivery.hooks import Hooks
from cio_relay.delivery.worker import Worker
from cio_relay.emulator import EmulatorConfig, EmulatorServer
from cio_relay.errors import ConfigError
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.factory import open_outbox
from cio_relay.server import create_app
from tests.fixtures.delivery import emulator_settings
from tests.server.conftest import serve

DEADLINE = 30.0
API_KEY = "region-test-" + "k3y-0123456789abcdefghijklmnop"


@pytest.fixture(scope="module")
def eu_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(region="eu")) as server:
        yield server


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield box
    box.close()


def _inspect(emulator: EmulatorServer, what: str) -> Any:
    return httpx.get(f"{emulator.url}/_emulator/{what}").json()


class _ResolveTo(httpx.AsyncHTTPTransport):
    """Connects every request to the emulator's socket while the URL and Host header still name
    the Customer.io host the client chose (a DNS override): the emulator judges the region by
    that host. No connection is kept: the worker does not close clients made by a factory."""

    def __init__(self, server: EmulatorServer) -> None:
        super().__init__(limits=httpx.Limits(max_keepalive_connections=0))
        self.port = server.port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return await super().handle_async_request(request)


def _region_checks(stats: dict[str, Any]) -> int:
    return sum(stats["requests"].get("GET /api/v1/accounts/region", {}).values())


def _email(n: int) -> ops.Operation:
    return ops.send_email(
        to=f"p{n}@example.com", identifiers={"id": f"p{n}"}, transactional_message_id=1
    )


async def test_a_worker_in_the_wrong_region_refuses_to_start_and_sends_nothing(
    eu_emulator: EmulatorServer, outbox: Outbox
) -> None:
    outbox.enqueue([ops.identify("ada", {"plan": "pro"}), ops.track("ada", "signed_up"), _email(0)])
    before = _inspect(eu_emulator, "stats")
    settings = emulator_settings(eu_emulator, "sqlite:///unused", region="us")
    worker = Worker(settings, outbox)
    with pytest.raises(ConfigError) as caught:
        await worker.arun()
    assert "'eu'" in str(caught.value) and "CUSTOMERIO_REGION" in str(caught.value)
    assert worker.health.status() == "paused: wrong region (app, track)"
    depth = outbox.depth()
    assert (depth.pending, depth.dead) == (3, 0)
    after = _inspect(eu_emulator, "stats")
    assert after["events_accepted"] == before["events_accepted"]
    assert after["deliveries"] == before["deliveries"]
    assert _region_checks(after) == _region_checks(before) + 1


async def test_the_right_region_starts_and_delivers(
    eu_emulator: EmulatorServer, outbox: Outbox
) -> None:
    outbox.enqueue([ops.identify("grace", {"plan": "pro"})])
    settings = emulator_settings(eu_emulator, "sqlite:///unused", region="eu")
    stop = asyncio.Event()
    hooks = Hooks()
    hooks.on_delivered(lambda op, latency: stop.set())
    worker = Worker(settings, outbox, hooks=hooks)
    stats = await asyncio.wait_for(worker.arun(stop), DEADLINE)
    assert stats.delivered == 1 and worker.health.status() == "ok"
    assert _inspect(eu_emulator, "people/grace")["attributes"] == {"plan": "pro"}


def test_app_sends_to_the_wrong_region_pause_and_readiness_says_why(
    eu_emulator: EmulatorServer, outbox: Outbox, tmp_path: Path
) -> None:
    # App API only: there are no Track credentials to ask the region with at start-up, so the
    # wrong region shows at the first send (301 "wrong datacenter" from api.customer.io).
    settings = emulator_settings(
        eu_emulator,
        "sqlite:///unused",
        region="us",
        site_id=None,
        track_api_key=None,
        api_keys=API_KEY,
        data_dir=tmp_path,
    )
    key = eu_emulator.config.app_api_key
    outbox.enqueue([_email(n) for n in range(4)])
    before = _inspect(eu_emulator, "stats")["deliveries"]
    hooks = Hooks()
    paused = threading.Event()
    hooks.on_region_mismatch(lambda api, detail: paused.set())
    dead: list[str] = []
    hooks.on_dead(lambda op, reason, detail: dead.append(detail))
    app = create_app(
        settings,
        outbox=outbox,
        hooks=hooks,
        idempotency_path=tmp_path / "i.db",
        worker_options={
            "app": lambda: AsyncAppClient(key, region="us", transport=_ResolveTo(eu_emulator))
        },
    )
    with serve(app) as url:
        assert paused.wait(DEADLINE)
        ready = httpx.get(f"{url}/readyz")
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
    assert ready.status_code == 503
    assert ready.json()["checks"]["workers"] == "paused: wrong region (app)"
    assert 'cio_relay_region_mismatch{api="app"} 1.0' in metrics
    assert 'cio_relay_region_mismatch{api="track"} 0.0' in metrics
    depth = outbox.depth()
    assert (depth.pending, depth.dead) == (4, 0) and dead == []
    assert _inspect(eu_emulator, "stats")["deliveries"] == before


def test_the_service_keeps_accepting_and_says_why_its_worker_will_not_start(
    eu_emulator: EmulatorServer, outbox: Outbox, tmp_path: Path
) -> None:
    settings = emulator_settings(
        eu_emulator, "sqlite:///unused", region="us", api_keys=API_KEY, data_dir=tmp_path
    )
    hooks = Hooks()
    refused = threading.Event()
    hooks.on_region_mismatch(lambda api, detail: refused.set())
    supervisor_log = _Records()
    logging.getLogger("cio_relay.server").addHandler(supervisor_log)
    app = create_app(settings, outbox=outbox, hooks=hooks, idempotency_path=tmp_path / "i.db")
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with serve(app) as url:
        assert refused.wait(DEADLINE)
        assert supervisor_log.arrived.wait(DEADLINE)
        accepted = httpx.post(f"{url}/v1/people/ada/events", json={"name": "e"}, headers=auth)
        ready = httpx.get(f"{url}/readyz")
    assert accepted.status_code == 202  # durable in the outbox, delivered once the region is
    assert ready.status_code == 503
    assert ready.json()["checks"]["workers"] == "paused: wrong region (app, track)"
    assert outbox.depth().pending == 1 and outbox.depth().dead == 0
    logging.getLogger("cio_relay.server").removeHandler(supervisor_log)
    # A setting to fix is one line that says how, not a traceback every restart.
    [record] = supervisor_log.records[:1]
    assert "cannot start" in record.getMessage() and "CUSTOMERIO_REGION" in record.getMessage()
    assert record.exc_info is None


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()
