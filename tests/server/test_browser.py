"""The dashboard in a real browser: Debian's Chromium driven by Playwright, over real HTTP.

The whole service runs (API, dashboard, worker) against the emulator. The test logs in with the
form, reads the outbox counts off the overview and compares them with the outbox, replays a dead
letter with a click, waits for the worker to deliver it (a delivery hook sets an event), checks
that the emulator received it, and saves screenshots under ``test-artifacts/``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright import sync_api as playwright

from cio_relay import operations as ops
from cio_relay.config import Settings
from cio_relay.delivery.hooks import Hooks
from cio_relay.emulator import EmulatorConfig, EmulatorServer
from cio_relay.operations import Operation
from cio_relay.outbox.base import DeadReason, Outbox
from cio_relay.server import create_app
from tests.server.conftest import serve

CHROMIUM = "/usr/bin/chromium"  # Debian's; `make test` installs it (scripts/system-deps.sh)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _dead_letter(outbox: Outbox, op: Operation, reason: DeadReason, detail: str) -> None:
    outbox.enqueue([op])
    (lease,) = [lease for lease in outbox.lease(100, 60) if lease.op.op_id == op.op_id]
    outbox.dead_letter(lease, reason, detail)


def _scheduled(outbox: Outbox, op: Operation) -> None:
    outbox.enqueue([op])
    (lease,) = [lease for lease in outbox.lease(100, 60) if lease.op.op_id == op.op_id]
    outbox.retry_later(lease, retry_at=time.time() + 3600, error="503 from Customer.io")


@pytest.fixture
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """An account in the EU, as the settings below say (the workers check it at start-up)."""
    with EmulatorServer(EmulatorConfig(region="eu")) as server:
        yield server


def test_operator_logs_in_sees_the_outbox_and_replays_a_dead_letter(
    browser: object, emulator: EmulatorServer, outbox: Outbox, tmp_path: Path, api_key: str
) -> None:
    settings = Settings(
        env="production",
        region="eu",
        api_keys=api_key,
        site_id="emulator-site",
        track_api_key="emulator-track-key",
        app_api_key="emulator-app-key",
        track_url=emulator.url,
        app_url=emulator.url,
        data_dir=tmp_path,
    )
    email = ops.send_email(
        to="replayed@example.com", transactional_message_id="welcome", identifiers={"id": "u-1"}
    )
    _dead_letter(outbox, email, DeadReason.AMBIGUOUS, "timed out after the request was written")
    _dead_letter(outbox, ops.track("u-2", "x" * 10), DeadReason.PERMANENT, "400: bad event")
    _dead_letter(outbox, ops.identify("u-3", {}), DeadReason.MAX_ATTEMPTS, "gave up after 15")
    for person in ("u-4", "u-5"):
        _scheduled(outbox, ops.track(person, "waiting"))

    delivered = threading.Event()
    hooks = Hooks()
    hooks.on_delivered(lambda op, _: delivered.set() if op.op_id == email.op_id else None)
    app = create_app(settings, outbox=outbox, hooks=hooks, idempotency_path=tmp_path / "i.db")
    ARTIFACTS.mkdir(exist_ok=True)

    with serve(app) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/dashboard")
        assert "/dashboard/login" in page.url  # no session yet
        page.fill("#key", api_key)
        page.click("#login")
        page.wait_for_url(f"{url}/dashboard")

        banner = page.locator("header.env")
        assert banner.get_attribute("data-environment") == "production"
        assert page.inner_text("#environment") == "PRODUCTION"
        assert page.inner_text("#region") == "region EU"
        assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(176, 0, 32)"

        depth = outbox.depth()
        shown = {
            state: page.inner_text(f"#depth-{state}")
            for state in ("ready", "scheduled", "leased", "dead")
        }
        assert shown == {
            "ready": str(depth.ready),
            "scheduled": str(depth.scheduled),
            "leased": str(depth.leased),
            "dead": str(depth.dead),
        }
        assert (depth.scheduled, depth.dead) == (2, 3)
        page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

        page.click("a[href='/dashboard/dead-letters']")
        assert page.inner_text("#dead-total") == "3"
        assert page.locator("#dead-letters tr[data-op-id]").count() == 3
        row = page.locator(f"tr[data-op-id='{email.op_id}']")
        assert "ambiguous" in row.inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard-dead-letters.png"), full_page=True)
        row.locator("button.replay").click()
        page.wait_for_selector("#notice")
        assert page.inner_text("#notice") == "replayed 1 dead letter"
        assert page.inner_text("#dead-total") == "2"

        assert delivered.wait(30), "the worker did not deliver the replayed email"
        deliveries = httpx.get(f"{emulator.url}/_emulator/deliveries").json()["deliveries"]
        assert [d["to"] for d in deliveries] == ["replayed@example.com"]
        assert outbox.count_dead() == 2
        page.goto(f"{url}/dashboard")
        assert page.inner_text("#depth-dead") == "2"
        page.screenshot(path=str(ARTIFACTS / "dashboard-after-replay.png"), full_page=True)
        page.close()
