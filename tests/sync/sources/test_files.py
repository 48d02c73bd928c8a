"""``FileSource``: CSV and Parquet files read through DuckDB."""

from __future__ import annotations

import uuid
from contextlib import closing
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cio_relay.errors import ConfigError
from cio_relay.sync.sources import FileSource, Unconvertible, open_source
from cio_relay.sync.spec import SyncSpec
from tests.sync.sources.conftest import rows_of


def test_csv_types_come_from_every_cell(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    lines = ["id,zip,score,joined,note"]
    lines += [f"u{n:05d},{10000 + n},{n},2026-01-01 00:00:{n % 60:02d}," for n in range(25_000)]
    # Past DuckDB's default sample of 20,480 rows: only a sniff of the whole file sees that
    # this line makes text of zip (a leading zero) and score.
    lines.append("u99999,02134,high,2026-01-02 00:00:00,late")
    path.write_text("\n".join(lines) + "\n")

    with closing(open_source(SyncSpec(source=str(path), updated_at_column="joined"))) as source:
        rows = rows_of(source, batch_size=5000)

    assert len(rows) == 25_001
    assert rows[1].key == "u00001"
    assert rows[1].attributes == {"zip": "10001", "score": "1", "note": None}
    assert rows[-1].attributes == {"zip": "02134", "score": "high", "note": "late"}
    assert rows[-1].updated_at == datetime(2026, 1, 2, tzinfo=UTC).timestamp()


def test_csv_ids_with_leading_zeros_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "people.txt"
    path.write_text("id,name\n007,bond\n10,ten\n9,nine\n")

    with closing(open_source(SyncSpec(source=f"csv:{path}"))) as source:
        assert isinstance(source, FileSource)
        keys = [row.key for row in rows_of(source)]

    assert keys == ["007", "10", "9"]  # text ordered as text: resuming after "10" gives "9"


def test_parquet_types_become_attribute_values(tmp_path: Path) -> None:
    account = uuid.UUID(int=42)
    table = pa.table(
        {
            "id": pa.array([2, 1], pa.int32()),
            "signed_up": pa.array(
                [datetime(2026, 1, 1, tzinfo=UTC)] * 2, pa.timestamp("ms", tz="UTC")
            ),
            "seen": pa.array([datetime(1970, 1, 1, 0, 1, 40)] * 2, pa.timestamp("us")),
            "balance": pa.array([Decimal("12.50")] * 2, pa.decimal128(10, 2)),
            "tags": pa.array([["a", "b"]] * 2, pa.list_(pa.string())),
            "address": pa.array([{"city": "Paris", "zip": 75001}] * 2),
            "counts": pa.array([[("x", 1)]] * 2, pa.map_(pa.string(), pa.int64())),
            "ids": pa.array([[(1, "x")]] * 2, pa.map_(pa.int64(), pa.string())),
            "avatar": pa.array([b"\x00"] * 2, pa.binary()),
            "ratio": pa.array([float("inf")] * 2, pa.float64()),
            "account": pa.array([str(account)] * 2, pa.string()),
        }
    )
    path = tmp_path / "people.parquet"
    pq.write_table(table, path)

    with closing(open_source(SyncSpec(source=str(path), updated_at_column="seen"))) as source:
        rows = rows_of(source)

    assert [row.key for row in rows] == [1, 2]
    assert rows[0].updated_at == 100.0
    assert rows[0].attributes == {
        "signed_up": 1767225600,
        "balance": 12.5,
        "tags": ["a", "b"],
        "address": {"city": "Paris", "zip": 75001},
        "counts": {"x": 1},
        "ids": Unconvertible("object key 1 is not a string"),
        "avatar": Unconvertible("bytes has no JSON form"),
        "ratio": Unconvertible("non-finite number inf"),
        "account": str(account),
    }


def test_a_parquet_glob_is_one_table(tmp_path: Path) -> None:
    for part, keys in enumerate(([5, 1], [3, 2], [4])):
        pq.write_table(
            pa.table({"id": keys, "day": [part] * len(keys)}), tmp_path / f"{part}.parquet"
        )

    spec = SyncSpec(source=f"parquet:{tmp_path}/*.parquet", updated_at_column="day")
    with closing(open_source(spec)) as source:
        everyone = [row.key for row in rows_of(source, batch_size=2)]
        since = [row.key for row in rows_of(source, after=2, since=0.0)]

    assert everyone == [1, 2, 3, 4, 5]
    assert since == [3, 4]


def test_a_file_with_a_query_or_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id\n1\n")

    with pytest.raises(ConfigError, match=r"table: a csv file is its own table; give no table"):
        open_source(SyncSpec(source=str(path), table="people"))
    with pytest.raises(ConfigError, match=r"query: a csv file is its own table"):
        open_source(SyncSpec(source=str(path), query="SELECT 1"))


def test_missing_unreadable_and_unorderable_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "float.csv").write_text("id,changed\n1.5,x\n")

    with pytest.raises(ConfigError, match=r"source: no parquet file at '.*absent\.parquet'"):
        open_source(SyncSpec(source=str(tmp_path / "absent.parquet")))
    with pytest.raises(ConfigError, match=r"source: no csv file at '.*\*\.csv\.gz'"):
        open_source(SyncSpec(source=f"csv:{tmp_path}/*.csv.gz"))
    with pytest.raises(ConfigError, match=r"source: '.*bad\.parquet' cannot be read"):
        open_source(SyncSpec(source=str(tmp_path / "bad.parquet")))
    with pytest.raises(ConfigError, match=r"id_column: 'id' has type DOUBLE"):
        open_source(SyncSpec(source=str(tmp_path / "float.csv")))
    with pytest.raises(ConfigError, match=r"updated_at_column: 'changed' has type VARCHAR"):
        open_source(
            SyncSpec(
                source=str(tmp_path / "float.csv"), id_column="changed", updated_at_column="changed"
            )
        )
