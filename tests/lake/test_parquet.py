"""ParquetLake: day partitions, buffered flushes, queries, atomic and resumable compaction."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from cio_relay.lake.parquet import ParquetLake
from cio_relay.lake.schema import COLUMN_NAMES
from tests.lake.helpers import row


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _ids(lake: ParquetLake) -> list[str]:
    return [r[0] for r in lake.query("SELECT event_id FROM events ORDER BY event_id").rows]


def test_rows_are_partitioned_by_the_utc_day_they_occurred(tmp_path: Path) -> None:
    with ParquetLake(tmp_path) as lake:
        lake.write(
            [
                row(when="2024-05-01 00:00:00"),
                row(when="2024-05-01 23:59:59"),
                row(when="2024-05-02 00:00:00"),
                row(when="2024-05-03 12:00:00"),
            ]
        )
        lake.flush()
        assert lake.days() == ["2024-05-01", "2024-05-02", "2024-05-03"]
        assert [p.parent.name for p in lake.files()] == [
            "date=2024-05-01",
            "date=2024-05-02",
            "date=2024-05-03",
        ]
        by_day = lake.query("SELECT date, count(*) FROM events GROUP BY date ORDER BY date").rows
    assert [(d.isoformat(), n) for d, n in by_day] == [
        ("2024-05-01", 2),
        ("2024-05-02", 1),
        ("2024-05-03", 1),
    ]


def test_each_flush_writes_one_new_file_per_day_touched(tmp_path: Path) -> None:
    with ParquetLake(tmp_path) as lake:
        lake.write([row(when="2024-05-01 10:00:00"), row(when="2024-05-02 10:00:00")])
        lake.flush()
        lake.write([row(when="2024-05-01 11:00:00")])
        lake.flush()
        lake.flush()  # nothing buffered: no file
        files = lake.files()
    assert [p.parent.name for p in files] == ["date=2024-05-01"] * 2 + ["date=2024-05-02"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_rows_are_buffered_until_the_count_or_age_is_reached(tmp_path: Path) -> None:
    clock = Clock()
    with ParquetLake(tmp_path, flush_rows=3, flush_interval=60, clock=clock) as lake:
        lake.write([row(), row()])
        assert lake.buffered == 2 and lake.files() == []
        lake.write([row()])
        assert lake.buffered == 0 and len(lake.files()) == 1  # by count
        lake.write([row()])
        clock.now += 59
        lake.write([])
        assert lake.buffered == 1
        clock.now += 1
        lake.write([])
        assert lake.buffered == 0 and len(lake.files()) == 2  # by age


def test_queries_see_buffered_rows_and_the_view_has_every_column(tmp_path: Path) -> None:
    with ParquetLake(tmp_path) as lake:
        empty = lake.query("SELECT * FROM events")
        assert empty.rows == [] and empty.columns == [*COLUMN_NAMES, "date"]
        lake.write([row(campaign_id="5")])
        result = lake.query("SELECT * FROM events")
        assert result.columns == [*COLUMN_NAMES, "date"] and len(result.rows) == 1
        assert result.as_dicts()[0]["campaign_id"] == "5"
        assert lake.query("SELECT count(*) FROM events WHERE campaign_id = ?", ["5"]).rows == [(1,)]


def test_close_flushes_and_a_reopened_lake_sees_everything(tmp_path: Path) -> None:
    rows = [row() for _ in range(5)]
    with ParquetLake(tmp_path, flush_rows=1_000) as lake:
        lake.write(rows)
    with ParquetLake(tmp_path) as reopened:
        assert _ids(reopened) == sorted(r.event_id for r in rows)
    with pytest.raises(ValueError, match="closed"):
        lake.write(rows)


def test_compaction_keeps_every_row_exactly_once(tmp_path: Path) -> None:
    day1 = [row(when=f"2024-05-01 {h:02d}:00:00") for h in range(10)]
    day2 = [row(when=f"2024-05-02 {h:02d}:00:00") for h in range(4)]
    with ParquetLake(tmp_path) as lake:
        for chunk in (day1[:3], day1[3:7] + day2[:2], day1[7:], day2[2:]):
            lake.write(chunk)
            lake.flush()
        lake.write([day1[0]._replace(received_at=day1[0].received_at + 5)])  # a redelivered row
        lake.flush()
        assert len(lake.files()) == 6
        report = lake.compact()
        assert report.days == ["2024-05-01", "2024-05-02"]
        assert (report.files_before, report.files_after) == (6, 2)
        assert (report.rows, report.duplicates_removed) == (14, 1)
        assert [p.name.startswith("compacted-") for p in lake.files()] == [True, True]
        assert _ids(lake) == sorted(r.event_id for r in day1 + day2)
        kept = lake.query(
            "SELECT received_at FROM events WHERE event_id = ?", [day1[0].event_id]
        ).rows
        assert len(kept) == 1  # the first received copy is the one kept
        assert lake.compact().files_before == 0  # already one file per day: nothing to do


def test_compaction_respects_the_row_budget(tmp_path: Path) -> None:
    with ParquetLake(tmp_path, compact_max_rows=4) as lake:
        for _ in range(4):
            lake.write([row(), row()])
            lake.flush()
        report = lake.compact()
        assert (report.files_before, report.files_after) == (4, 2)
        assert len(_ids(lake)) == 8


class CrashBeforeSwap(ParquetLake):
    """Dies after writing the journal, before renaming the new file into place."""

    def _write_journal(self, day_dir: Path, journal: dict[str, object]) -> None:  # type: ignore[override]
        ParquetLake._write_journal(day_dir, journal)
        raise KeyboardInterrupt("crash")


class CrashAfterSwap(ParquetLake):
    """Dies after the new file is in place, before the old files are deleted."""

    @staticmethod
    def _finish(day_dir: Path, journal: dict[str, object]) -> None:
        raise KeyboardInterrupt("crash")


@pytest.mark.parametrize("crashing", [CrashBeforeSwap, CrashAfterSwap])
def test_an_interrupted_compaction_is_finished_by_the_next_one(
    tmp_path: Path, crashing: type[ParquetLake]
) -> None:
    rows = [row(when=f"2024-05-01 0{h}:00:00") for h in range(6)]
    with ParquetLake(tmp_path) as lake:
        for chunk in (rows[:2], rows[2:4], rows[4:]):
            lake.write(chunk)
            lake.flush()
    crashed = crashing(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        crashed.compact()
    day_dir = tmp_path / "date=2024-05-01"
    journal = orjson.loads((day_dir / "_compaction.json").read_bytes())
    assert len(journal["old"]) == 3
    with ParquetLake(tmp_path) as lake:
        # Whatever the crash left, no row is missing; the next compaction finishes the job.
        assert set(_ids(lake)) == {r.event_id for r in rows}
        lake.compact()
        assert _ids(lake) == sorted(r.event_id for r in rows)
        assert len(lake.files()) == 1
    assert not (day_dir / "_compaction.json").exists()
    assert not list(day_dir.glob("*.tmp"))
