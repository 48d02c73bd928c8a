"""The BigQuery loader end to end against bqemulator (``tests/lake/bigquery_emulator.py``).

The emulator path replaces a day through a staging table (``StagingReplace``); the production
job configuration is asserted in ``test_bigquery.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from google.api_core.retry import Retry
from typer.testing import CliRunner

from cio_relay.cli import app
from cio_relay.config import Settings
from cio_relay.errors import ConfigError
from cio_relay.lake.bigquery import BigQueryLoader, DayResult, lake_days
from cio_relay.lake.bigquery_jobs import StagingReplace, TableName, connect_client, load_job_id
from cio_relay.lake.bigquery_state import LoadState, state_path_for
from cio_relay.lake.parquet import ParquetLake
from cio_relay.lake.schema import bigquery_schema
from cio_relay.observability.metrics import Metrics
from cio_relay.server.runner import start_bigquery_loader
from tests.fixtures.redis_server import free_port
from tests.lake import bigquery_emulator as emulator_module
from tests.lake.bigquery_emulator import BigQueryEmulator, bigquery_dataset, bigquery_emulator
from tests.lake.helpers import row

__all__ = ["bigquery_dataset", "bigquery_emulator"]  # the fixtures, used by name

MAY_1, MAY_2 = date(2024, 5, 1), date(2024, 5, 2)


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[ParquetLake]:
    with ParquetLake(tmp_path / "lake") as opened:
        yield opened


@pytest.fixture
def table(bigquery_dataset: str) -> TableName:
    return TableName(f"{bigquery_dataset}.events")


@pytest.fixture
def state(lake: ParquetLake) -> Iterator[LoadState]:
    opened = LoadState(state_path_for(lake.directory))
    yield opened
    opened.close()


def make_loader(
    lake: ParquetLake,
    table: TableName,
    state: LoadState,
    url: str,
    results: list[DayResult] | None = None,
) -> BigQueryLoader:
    return BigQueryLoader(
        lake.directory,
        table,
        state=state,
        connect=lambda: connect_client(table, emulator=url),
        strategy=StagingReplace(upload_retries=0, api_retry=Retry(timeout=2), job_timeout=60),
        on_result=results.append if results is not None else None,
    )


def rows_by_day(emulator: BigQueryEmulator, table: TableName) -> dict[date, list[str]]:
    query = f"SELECT DATE(occurred_at) AS day, event_id FROM `{table}` ORDER BY 1, 2"  # noqa: S608
    found: dict[date, list[str]] = {}
    for day, event_id in emulator.client().query(query, job_retry=None).result():
        found.setdefault(day, []).append(event_id)
    return found


def write(lake: ParquetLake, *rows: Any) -> None:
    lake.write(rows)
    lake.flush()


def test_each_day_loads_into_its_partition_and_an_unchanged_day_is_not_sent_again(
    lake: ParquetLake, table: TableName, state: LoadState, bigquery_emulator: BigQueryEmulator
) -> None:
    write(lake, row(event_id="a1", when="2024-05-01 10:00:00"))
    write(
        lake,
        row(event_id="a2", when="2024-05-01 23:59:59"),
        row(event_id="b1", when="2024-05-02 00:00:00"),
    )
    loader = make_loader(lake, table, state, bigquery_emulator.url)

    first = loader.run_pass()
    second = loader.run_pass()

    assert [(r.day, r.outcome, r.rows) for r in first] == [
        (MAY_1, "loaded", 2),
        (MAY_2, "loaded", 1),
    ]
    assert [(r.day, r.outcome) for r in second] == [(MAY_1, "unchanged"), (MAY_2, "unchanged")]
    assert rows_by_day(bigquery_emulator, table) == {MAY_1: ["a1", "a2"], MAY_2: ["b1"]}
    table_info = bigquery_emulator.client().get_table(str(table))
    assert table_info.time_partitioning.field == "occurred_at"
    assert [f.name for f in table_info.schema] == [f["name"] for f in bigquery_schema()]


def test_a_changed_day_is_replaced_never_appended_and_compaction_changes_no_row(
    lake: ParquetLake, table: TableName, state: LoadState, bigquery_emulator: BigQueryEmulator
) -> None:
    loader = make_loader(lake, table, state, bigquery_emulator.url)
    write(lake, row(event_id="a1"), row(event_id="b1", when="2024-05-02 09:00:00"))
    loader.run_pass()
    write(lake, row(event_id="a2"))  # a late flush into a day already loaded

    changed = loader.run_pass()
    lake.compact()  # new file names: the day goes up once more, with the same rows
    compacted = loader.run_pass()

    assert [(r.day, r.outcome, r.rows) for r in changed] == [
        (MAY_1, "loaded", 2),
        (MAY_2, "unchanged", 0),
    ]
    assert [(r.day, r.outcome) for r in compacted] == [(MAY_1, "loaded"), (MAY_2, "unchanged")]
    assert rows_by_day(bigquery_emulator, table) == {MAY_1: ["a1", "a2"], MAY_2: ["b1"]}


def test_a_lost_state_file_reloads_every_day_without_a_duplicate(
    lake: ParquetLake,
    table: TableName,
    state: LoadState,
    bigquery_emulator: BigQueryEmulator,
    tmp_path: Path,
) -> None:
    write(lake, row(event_id="a1"), row(event_id="b1", when="2024-05-02 09:00:00"))
    make_loader(lake, table, state, bigquery_emulator.url).run_pass()
    fresh = LoadState(tmp_path / "other-state.db")
    try:
        again = make_loader(lake, table, fresh, bigquery_emulator.url).run_pass()
    finally:
        fresh.close()

    assert [r.outcome for r in again] == ["loaded", "loaded"]
    assert rows_by_day(bigquery_emulator, table) == {MAY_1: ["a1"], MAY_2: ["b1"]}


def test_a_load_cut_short_by_a_crash_resumes_with_the_same_job_id(
    lake: ParquetLake, table: TableName, state: LoadState, bigquery_emulator: BigQueryEmulator
) -> None:
    write(lake, row(event_id="a1"))
    (day,) = lake_days(lake.directory)
    crashed_job = load_job_id(table, MAY_1, day.fingerprint, 1)
    # The crash came after the job was recorded as sent and before its outcome was.
    state.begin(
        str(table), "2024-05-01", fingerprint=day.fingerprint, job_id=crashed_job, attempt=1, now=0
    )

    (resumed,) = make_loader(lake, table, state, bigquery_emulator.url).run_pass()

    assert (resumed.outcome, resumed.job_id, resumed.rows) == ("loaded", crashed_job, 1)
    assert state.days(str(table))["2024-05-01"].status == "loaded"
    assert rows_by_day(bigquery_emulator, table) == {MAY_1: ["a1"]}


def test_a_schema_mismatch_is_recorded_per_day_and_loads_once_the_table_is_fixed(
    lake: ParquetLake, table: TableName, state: LoadState, bigquery_emulator: BigQueryEmulator
) -> None:
    from google.cloud import bigquery

    client = bigquery_emulator.client()
    wrong = [bigquery.SchemaField("event_id", "INT64"), bigquery.SchemaField("occurred_at", "DATE")]
    client.create_table(bigquery.Table(str(table), schema=wrong))
    write(lake, row(event_id="a1"), row(event_id="b1", when="2024-05-02 09:00:00"))
    results: list[DayResult] = []
    loader = make_loader(lake, table, state, bigquery_emulator.url, results)

    failed = loader.run_pass()
    summary = state.summary(str(table))
    client.delete_table(str(table))
    fixed = loader.run_pass()

    assert [(r.outcome, r.reason) for r in failed] == [("failed", "schema"), ("failed", "schema")]
    assert summary.failed == 2 and summary.failed_by_reason == (("schema", 2),)
    assert summary.failures[0].error
    assert [r.outcome for r in fixed] == ["loaded", "loaded"]
    assert [r.outcome for r in results] == ["failed", "failed", "loaded", "loaded"]
    assert rows_by_day(bigquery_emulator, table) == {MAY_1: ["a1"], MAY_2: ["b1"]}


def test_an_unreachable_bigquery_stops_the_pass_and_the_next_pass_catches_up(
    lake: ParquetLake, table: TableName, state: LoadState, bigquery_emulator: BigQueryEmulator
) -> None:
    write(lake, row(event_id="a1"), row(event_id="b1", when="2024-05-02 09:00:00"))
    nothing_there = f"http://127.0.0.1:{free_port()}"

    down = make_loader(lake, table, state, nothing_there).run_pass()
    up = make_loader(lake, table, state, bigquery_emulator.url).run_pass()

    assert [(r.day, r.outcome, r.reason) for r in down] == [(MAY_1, "failed", "unavailable")]
    assert [(r.day, r.outcome) for r in up] == [(MAY_1, "loaded"), (MAY_2, "loaded")]
    assert state.summary(str(table)).failed == 0
    assert rows_by_day(bigquery_emulator, table) == {MAY_1: ["a1"], MAY_2: ["b1"]}


# --- the command and the service ---------------------------------------------------------------

runner = CliRunner(env={"COLUMNS": "240"})


def test_the_export_command_loads_the_days_from_since_on(
    lake: ParquetLake, table: TableName, bigquery_emulator: BigQueryEmulator
) -> None:
    write(lake, row(event_id="a1"), row(event_id="b1", when="2024-05-02 09:00:00"))
    command = ["lake", "export", "bigquery", "--table", str(table), "--lake", str(lake.directory)]
    command += ["--emulator", bigquery_emulator.url]

    first = runner.invoke(app, [*command, "--since", "2024-05-02"])
    second = runner.invoke(app, command)

    assert first.exit_code == 0, first.output
    assert "2024-05-02" in first.output and "2024-05-01" not in first.output
    assert "1 of 1 days loaded" in first.output
    assert second.exit_code == 0, second.output
    assert "unchanged" in second.output and "1 of 2 days loaded" in second.output
    assert rows_by_day(bigquery_emulator, table) == {MAY_1: ["a1"], MAY_2: ["b1"]}


def test_the_export_command_exits_1_naming_the_reason_of_a_failed_day(
    lake: ParquetLake, table: TableName, bigquery_emulator: BigQueryEmulator
) -> None:
    from google.cloud import bigquery

    wrong = [bigquery.SchemaField("event_id", "INT64")]
    bigquery_emulator.client().create_table(bigquery.Table(str(table), schema=wrong))
    write(lake, row(event_id="a1"))
    command = ["lake", "export", "bigquery", "--table", str(table), "--lake", str(lake.directory)]

    result = runner.invoke(app, [*command, "--emulator", bigquery_emulator.url])

    assert result.exit_code == 1
    assert "failed" in result.output and "schema" in result.output


def test_a_bad_table_name_is_a_configuration_error(lake: ParquetLake) -> None:
    result = runner.invoke(app, ["lake", "export", "bigquery", "--table", "events"])

    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)


def test_the_service_loads_on_an_interval_and_counts_the_loads_in_its_metrics(
    tmp_path: Path, table: TableName, bigquery_emulator: BigQueryEmulator
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        bigquery_table=str(table),
        bigquery_emulator=bigquery_emulator.url,
        bigquery_interval=3600,
    )
    with ParquetLake(settings.lake_url) as lake:
        write(lake, row(event_id="a1"), row(event_id="b1", when="2024-05-02 09:00:00"))
    metrics = Metrics()

    periodic = start_bigquery_loader(settings, metrics)
    assert periodic is not None
    try:
        assert periodic.wait_for_passes(1, timeout=60)
    finally:
        periodic.stop()

    assert rows_by_day(bigquery_emulator, table) == {MAY_1: ["a1"], MAY_2: ["b1"]}
    loaded = {"result": "loaded", "reason": ""}
    assert metrics.sample("cio_relay_bigquery_loads_total", loaded) == 2
    assert (
        start_bigquery_loader(settings.model_copy(update={"bigquery_table": None}), metrics) is None
    )


def test_the_metrics_read_the_load_state_at_each_scrape(
    lake: ParquetLake, table: TableName, state: LoadState, bigquery_emulator: BigQueryEmulator
) -> None:
    from google.cloud import bigquery

    bigquery_emulator.client().create_table(
        bigquery.Table(str(table), schema=[bigquery.SchemaField("event_id", "INT64")])
    )
    write(lake, row(event_id="a1"), row(event_id="b1", when="2024-05-02 09:00:00"))
    metrics = Metrics()
    metrics.watch_bigquery(lambda: state.summary(str(table)))
    loader = make_loader(lake, table, state, bigquery_emulator.url, [])
    loader.on_result = metrics.on_bigquery_load

    loader.run_pass()

    assert metrics.sample("cio_relay_bigquery_state_up") == 1
    assert metrics.sample("cio_relay_bigquery_days", {"status": "failed"}) == 2
    assert metrics.sample("cio_relay_bigquery_failing_days", {"reason": "schema"}) == 2
    assert metrics.sample("cio_relay_bigquery_failing_days", {"reason": "quota"}) == 0
    failed = {"result": "failed", "reason": "schema"}
    assert metrics.sample("cio_relay_bigquery_loads_total", failed) == 2
    assert b"cio_relay_bigquery_failing_days" in metrics.render()


def test_a_missing_emulator_venv_fails_the_test_naming_the_command_that_makes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emulator_module, "VENV_PYTHON", tmp_path / "no-venv" / "bin" / "python")

    with pytest.raises(pytest.fail.Exception, match="make tool-venvs"):
        BigQueryEmulator(tmp_path).start()
