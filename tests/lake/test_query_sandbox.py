"""Lake queries run in a DuckDB sandbox: the ``events`` view works, no other file is reachable.

``cio-relay lake query`` runs whatever SQL it is given; before the sandbox, ``read_csv`` read any
file on the host and ``COPY ... TO`` wrote one (issue 11).
"""

# ruff: noqa: S608 - the SQL here is the attack, built on purpose from temporary paths

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from cio_relay.cli import app
from cio_relay.lake.memory import MemoryLake
from cio_relay.lake.parquet import ParquetLake
from tests.lake.helpers import row

runner = CliRunner(env={"COLUMNS": "240"})
_REFUSED = "disabled by configuration"


@pytest.fixture
def lake(tmp_path: Path) -> ParquetLake:
    opened = ParquetLake(tmp_path / "lake")
    opened.write([row("sent", "2024-05-01 10:00:00"), row("opened", "2024-05-02 10:00:00")])
    opened.flush()
    return opened


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.csv"
    path.write_text("name,value\nprivate,s3cr3t-value\n")
    return path


def _attacks(tmp_path: Path, lake: ParquetLake, secret: Path) -> dict[str, str]:
    inside = lake.files()[0]
    return {
        "read a file": f"SELECT * FROM read_csv('{secret}')",
        "read text": f"SELECT * FROM read_text('{secret}')",
        "read a lake file directly": f"SELECT * FROM read_parquet('{inside}')",
        "list files": f"SELECT * FROM glob('{tmp_path}/*')",
        "write a file": f"COPY (SELECT 1 AS x) TO '{tmp_path / 'written.csv'}'",
        "write into the lake": (
            f"COPY (SELECT * FROM events) TO '{lake.directory / 'date=2099-01-01' / 'x.parquet'}'"
        ),
        "overwrite a lake file": (
            f"COPY (SELECT 1 AS x) TO '{inside}' (FORMAT parquet, USE_TMP_FILE false)"
        ),
        "attach a database": f"ATTACH '{tmp_path / 'other.db'}' AS other",
        "install an extension": "INSTALL httpfs",
    }


def test_the_events_view_still_answers(lake: ParquetLake) -> None:
    result = lake.query("SELECT date, metric FROM events ORDER BY date")
    assert [(str(day), metric) for day, metric in result.rows] == [
        ("2024-05-01", "sent"),
        ("2024-05-02", "opened"),
    ]
    assert lake.query("SELECT count(*) FROM events WHERE date = DATE '2024-05-02'").rows == [(1,)]


def test_no_file_outside_the_view_can_be_read_or_written(
    tmp_path: Path, lake: ParquetLake, secret: Path
) -> None:
    files_before = {path: path.read_bytes() for path in lake.files()}
    for name, sql in _attacks(tmp_path, lake, secret).items():
        with pytest.raises(duckdb.Error) as refused:
            lake.query(sql)
        assert _REFUSED in str(refused.value) or "Permission" in str(refused.value), name
    assert not (tmp_path / "written.csv").exists()
    assert not (tmp_path / "other.db").exists()
    assert {path: path.read_bytes() for path in lake.files()} == files_before
    assert lake.query("SELECT count(*) FROM events").rows == [(2,)]


def test_the_sandbox_cannot_be_switched_off_by_the_query(lake: ParquetLake, secret: Path) -> None:
    for setting in (
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET enable_external_access",
        "SET allowed_directories = ['/']",
    ):
        with pytest.raises(duckdb.Error, match="locked"):
            lake.query(setting)
    with pytest.raises(duckdb.Error, match=_REFUSED):
        lake.query(f"SELECT * FROM read_csv('{secret}')")


def test_the_memory_lake_is_sandboxed_the_same_way(secret: Path) -> None:
    memory = MemoryLake()
    memory.write([row("sent")])
    assert memory.query("SELECT count(*) FROM events").rows == [(1,)]
    with pytest.raises(duckdb.Error, match=_REFUSED):
        memory.query(f"SELECT * FROM read_csv('{secret}')")


def test_lake_query_command_refuses_both_attacks_with_a_clear_error(
    tmp_path: Path, lake: ParquetLake, secret: Path
) -> None:
    lake_dir = str(lake.directory)
    read = runner.invoke(
        app, ["lake", "query", f"SELECT * FROM read_csv('{secret}')", "--lake", lake_dir]
    )
    assert read.exit_code == 1
    assert "query failed" in read.output and _REFUSED in read.output
    assert "s3cr3t-value" not in read.output
    target = tmp_path / "copied.csv"
    written = runner.invoke(
        app, ["lake", "query", f"COPY (SELECT * FROM events) TO '{target}'", "--lake", lake_dir]
    )
    assert written.exit_code == 1
    assert "query failed" in written.output and _REFUSED in written.output
    assert not target.exists()
    normal = runner.invoke(
        app, ["lake", "query", "SELECT metric FROM events ORDER BY metric", "--lake", lake_dir]
    )
    assert normal.exit_code == 0, normal.output
    assert "opened" in normal.output and "sent" in normal.output


def test_a_file_removed_between_listing_and_reading_is_retried(
    lake: ParquetLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = lake.files()
    ghost = real[0].with_name("part-compacted-away.parquet")
    listings = iter([[*real, ghost], real])  # as if a compaction removed ``ghost`` meanwhile
    monkeypatch.setattr(lake, "files", lambda: next(listings))
    assert lake.query("SELECT count(*) FROM events").rows == [(2,)]


def test_a_bad_query_is_not_retried(lake: ParquetLake, monkeypatch: pytest.MonkeyPatch) -> None:
    listed = 0

    def files() -> list[Path]:
        nonlocal listed
        listed += 1
        return sorted(lake.directory.glob("date=*/*.parquet"))

    monkeypatch.setattr(lake, "files", files)
    with pytest.raises(duckdb.BinderException):
        lake.query("SELECT nope FROM events")
    assert listed == 1
