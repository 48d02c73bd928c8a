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

from cio_relay.lake.bigquery import BigQueryLoader, DayResult
from cio_relay.lake.bigquery_jobs import StagingReplace, TableName, connect_client
from cio_relay.lake.bigquery_state import LoadState, state_path_for
from cio_relay.lake.parquet import ParquetLake
from cio_relay.lake.schema import bigquery_schema
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
        strategy=StagingReplace(upload_retries=0, job_timeout=60),
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
