"""``cio-relay lake query|funnel|compact`` and ``cio-relay webhooks parked|retry|quarantined``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cio_relay.cli import app
from cio_relay.lake.parquet import ParquetLake
from cio_relay.webhooks.events import parse_event
from cio_relay.webhooks.sqlite_inbox import SQLiteInbox
from tests.lake.helpers import row
from tests.webhooks.helpers import payload

runner = CliRunner(env={"COLUMNS": "240"})  # wide enough that Rich does not wrap cells


@pytest.fixture
def lake_dir(tmp_path: Path) -> str:
    with ParquetLake(tmp_path / "lake") as lake:
        lake.write(
            [
                row("sent", "2024-05-01 10:00:00", delivery_id="d1", campaign_id="42"),
                row("delivered", "2024-05-01 10:00:05", delivery_id="d1", campaign_id="42"),
            ]
        )
        lake.flush()
        lake.write([row("opened", "2024-05-01 11:00:00", delivery_id="d1", campaign_id="42")])
    return str(tmp_path / "lake")


def test_lake_query_prints_a_table(lake_dir: str) -> None:
    result = runner.invoke(
        app,
        [
            "lake",
            "query",
            "SELECT metric, count(*) AS n FROM events GROUP BY 1 ORDER BY 1",
            "--lake",
            lake_dir,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "metric" in result.output and "delivered" in result.output and "3 rows" in result.output


def test_lake_query_reports_bad_sql_without_a_traceback(lake_dir: str) -> None:
    result = runner.invoke(app, ["lake", "query", "SELECT nope FROM events", "--lake", lake_dir])
    assert result.exit_code == 1
    assert "query failed" in result.output and "Traceback" not in result.output


def test_lake_query_defaults_to_the_settings_lake(
    lake_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIO_RELAY_LAKE", lake_dir)
    result = runner.invoke(app, ["lake", "query", "SELECT count(*) AS total FROM events"])
    assert result.exit_code == 0, result.output
    assert "total" in result.output and "3" in result.output


def test_lake_funnel_prints_counts_and_rates(lake_dir: str) -> None:
    result = runner.invoke(app, ["lake", "funnel", "--lake", lake_dir, "--days", "100000"])
    assert result.exit_code == 0, result.output
    assert "2024-05-01" in result.output and "42" in result.output
    assert "1 (100%)" in result.output  # delivered/sent and opened/delivered


def test_lake_funnel_refuses_an_unknown_grouping(lake_dir: str) -> None:
    result = runner.invoke(app, ["lake", "funnel", "--by", "newsletter", "--lake", lake_dir])
    assert result.exit_code == 2
    assert "must be one of campaign, broadcast, transactional" in result.output


def test_lake_compact(lake_dir: str) -> None:
    result = runner.invoke(app, ["lake", "compact", "--lake", lake_dir])
    assert result.exit_code == 0, result.output
    assert "compacted 2 files into 1 (3 rows, 0 duplicates removed)" in result.output


def test_webhooks_parked_retry_and_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.db"
    raw = payload("email", "bounced")
    event = parse_event(raw)
    with SQLiteInbox(path) as inbox:
        inbox.store(event, raw)
        inbox.park(event.event_id, error="suppress: ConnectionError: refused")
        inbox.quarantine(b"not json at all", "body: not valid JSON")
    parked = runner.invoke(app, ["webhooks", "parked", "--inbox", str(path)])
    assert parked.exit_code == 0, parked.output
    assert event.event_id in parked.output and "ConnectionError" in parked.output
    quarantined = runner.invoke(app, ["webhooks", "quarantined", "--inbox", str(path)])
    assert "not json at all" in quarantined.output and "1 quarantined" in quarantined.output
    refused = runner.invoke(app, ["webhooks", "retry", "--inbox", str(path)])
    assert refused.exit_code == 2
    retried = runner.invoke(app, ["webhooks", "retry", "--all", "--inbox", str(path)])
    assert "1 parked events are pending again" in retried.output
    with SQLiteInbox(path) as inbox:
        assert inbox.counts().pending == 1 and inbox.counts().parked == 0
