"""Scheduled bulk syncs in the service: their runs on the dashboard's Syncs page, in Debian's
Chromium, and their series on ``/metrics``.

The service is built as ``cio-relay run`` builds it, with a syncs file (``CIO_RELAY_SYNCS``) of
two syncs with ``every``: one over a real SQLite source whose third row breaks an attribute
limit, one whose source file is missing. The scheduler is the runner's
(``start_sync_scheduler``), not started: the test runs one round with ``tick()``.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from playwright import sync_api as playwright

from cio_relay.config import Settings
from cio_relay.errors import ConfigError
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.server import create_app
from cio_relay.server.syncs import start_sync_scheduler
from tests.server.conftest import serve
from tests.server.test_browser import ARTIFACTS, browser  # noqa: F401 - the fixture

__all__: list[str] = []


def syncs_file(tmp_path: Path) -> Path:
    with closing(sqlite3.connect(tmp_path / "app.db")) as conn, conn:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT, plan TEXT)")
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, ?)",
            [
                (1, "ada@example.com", "pro"),
                (2, "bob@example.com", "free"),
                (3, "c@x.io", "x" * 1200),
            ],
        )
    path = tmp_path / "syncs.toml"
    path.write_text(
        f'[[sync]]\nname = "people"\nsource = "sqlite:///{tmp_path}/app.db"\ntable = "people"\n'
        "every = 600\n\n"
        f'[[sync]]\nname = "broken"\nsource = "sqlite:///{tmp_path}/gone.db"\ntable = "people"\n'
        "every = 600\n\n"
        f'[[sync]]\nname = "on-demand"\nsource = "sqlite:///{tmp_path}/app.db"\ntable = "people"\n'
    )
    return path


def sample(text: str, series: str) -> float | None:
    """The value of one exposition line, ``name{labels}`` exactly as Prometheus writes it."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def test_a_scheduled_run_shows_on_the_syncs_page_and_moves_the_metrics(
    browser: playwright.Browser,  # noqa: F811 - the fixture
    outbox: Outbox,
    tmp_path: Path,
    api_key: str,
) -> None:
    settings = Settings(api_keys=api_key, data_dir=tmp_path, syncs=syncs_file(tmp_path))
    app = create_app(settings, outbox=outbox, run_workers=False, idempotency_path=tmp_path / "i.db")
    service = app.state.service
    scheduler = start_sync_scheduler(settings, service.relay, service.metrics, start=False)
    assert scheduler is not None
    assert [spec.name for spec in scheduler.specs] == ["people", "broken"]
    auth = {"Authorization": f"Bearer {api_key}"}

    with serve(app) as url:
        before = httpx.get(f"{url}/metrics", headers=auth).text
        completed = 'cio_relay_sync_runs_total{status="completed",sync="people"}'
        assert sample(before, completed) == 0.0
        assert sample(before, 'cio_relay_sync_rows_total{outcome="added",sync="people"}') == 0.0

        attempts = scheduler.tick()
        assert [(a.name, a.outcome) for a in attempts] == [
            ("people", "completed"),
            ("broken", "failed"),
        ]

        after = httpx.get(f"{url}/metrics", headers=auth).text
        assert sample(after, completed) == 1.0
        assert sample(after, 'cio_relay_sync_runs_total{status="failed",sync="broken"}') == 1.0
        assert sample(after, 'cio_relay_sync_rows_total{outcome="added",sync="people"}') == 2.0
        assert sample(after, 'cio_relay_sync_rows_total{outcome="invalid",sync="people"}') == 1.0
        people_run = attempts[0].run
        assert people_run is not None
        last = 'cio_relay_sync_last_completed_timestamp_seconds{sync="people"}'
        assert sample(after, last) == people_run.finished_at
        assert sample(after, 'cio_relay_sync_run_duration_seconds_count{sync="people"}') == 1.0
        labels = {
            pair.split("=")[0]
            for line in after.splitlines()
            if line.startswith("cio_relay_sync_")
            for pair in line.split("{")[1].split("}")[0].split(",")
        }
        assert labels == {"sync", "outcome", "status", "le"}  # never a person

        page = browser.new_page()
        page.goto(f"{url}/dashboard/login")
        page.fill("#key", api_key)
        page.click("#login")
        page.wait_for_url(f"{url}/dashboard")
        page.click("a[href='/dashboard/syncs']")
        page.wait_for_url(f"{url}/dashboard/syncs")

        row = page.locator("#sync-runs tr[data-sync='people']")
        assert row.locator(".status").inner_text() == "completed"
        assert row.locator(".status").evaluate("e => getComputedStyle(e).color") == (
            "rgb(31, 138, 76)"
        )
        assert [row.locator(f".{n}").inner_text() for n in ("added", "invalid", "operations")] == [
            "2",
            "1",
            "2",
        ]
        broken = page.locator("#sync-runs tr[data-sync='broken']")
        assert broken.locator(".status").inner_text() == "failed"
        assert "ConfigError: source: no SQLite file" in broken.locator(".error").inner_text()

        errors = page.locator("table.row-errors[data-sync='people'] tr").nth(1)
        cells = [errors.locator("td").nth(i).inner_text() for i in range(4)]
        assert cells == ["3", "attributes.plan", "1,000", "1,200"]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-syncs.png"), full_page=True)
        page.close()


def test_without_scheduled_syncs_there_is_no_scheduler_and_a_bad_file_stops_the_start(
    tmp_path: Path,
) -> None:
    app = create_app(
        Settings(data_dir=tmp_path),
        outbox=MemoryOutbox(),
        run_workers=False,
        idempotency_path=tmp_path / "i.db",
    )
    service = app.state.service
    assert start_sync_scheduler(service.settings, service.relay, service.metrics) is None

    on_demand = tmp_path / "on-demand.toml"
    on_demand.write_text('[[sync]]\nname = "x"\nsource = "people.csv"\n')
    settings = Settings(data_dir=tmp_path, syncs=on_demand)
    assert start_sync_scheduler(settings, service.relay, service.metrics) is None

    broken = tmp_path / "broken.toml"
    broken.write_text('[[sync]]\nname = "x"\nsource = "people.csv"\nevery = -1\n')
    with pytest.raises(ConfigError, match=r"\[\[sync\]\] #1 \(x\): every: Input should be"):
        start_sync_scheduler(Settings(syncs=broken), service.relay, service.metrics)


def test_over_a_redis_outbox_the_syncs_page_says_why_user_sync_is_off(
    redis_outbox: Outbox, tmp_path: Path, api_key: str
) -> None:
    app = create_app(
        Settings(api_keys=api_key, data_dir=tmp_path),
        outbox=redis_outbox,
        run_workers=False,
        idempotency_path=tmp_path / "i.db",
    )
    with serve(app) as url:
        page = httpx.get(f"{url}/dashboard/syncs", headers={"Authorization": f"Bearer {api_key}"})
    assert page.status_code == 200
    assert 'id="syncs-unavailable"' in page.text
    assert "User sync is off: user sync keeps its state" in page.text
    assert "CIO_RELAY_OUTBOX" in page.text
    assert 'id="sync-runs"' not in page.text
