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

from cio_relay.lake.bigquery import BigQueryLoader, DayResult, lake_days
from cio_relay.lake.bigquery_jobs import StagingReplace, TableName, connect_client, load_job_id
from cio_relay.lake.bigquery_state import LoadState, state_path_for
from cio_relay.lake.parquet import ParquetLake
from cio_relay.lake.schema import bigquery_schema
from tests.fixtures.redis_server import free_port
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
