"""``ParquetLake``: the embedded default lake. Parquet files partitioned by day, read by DuckDB.

Layout under ``directory``::

    date=2024-05-01/part-<time_ns>-<random>.parquet      one per flush that touched the day
    date=2024-05-01/compacted-<time_ns>-<random>.parquet  after ``compact``

Writes are buffered and flushed by count (``flush_rows``) or age (``flush_interval``, checked
on each ``write``; the pipeline also flushes on its own clock, and ``query``/``close`` flush).
A flush writes one new file per day touched, to a ``.tmp`` name first, fsyncs it and renames
it into place, so readers (DuckDB globbing ``date=*/*.parquet``) never see a partial file and a
crash leaves at worst a stray ``.tmp``. If a flush fails, its rows stay buffered for the next.

``compact`` merges each day's files into one (in groups of at most ``compact_max_rows`` rows,
so memory stays bounded) and drops duplicate event ids. It is atomic per day and safe to
interrupt: it writes and verifies the new file, records a journal naming the files it replaces,
renames the new file into place, deletes the old ones, then the journal. An interrupted run is
finished by the next ``compact`` from the journal (old files deleted if the new one is in
place, the unfinished ``.tmp`` removed otherwise), so no row is lost or kept twice. Between the
rename and the deletes a concurrent reader may see a row twice; funnels count distinct
deliveries, so their numbers do not move. One compaction runs at a time across processes (an
``flock`` on ``.compaction.lock``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from cio_relay.lake.base import CompactionReport, FunnelFromQuery, QueryResult
from cio_relay.lake.duck import connect, create_events_view, run_query, to_arrow_table
from cio_relay.lake.schema import LakeEvent, arrow_schema

__all__ = ["ParquetLake"]

_JOURNAL = "_compaction.json"
_STALE_TMP_SECONDS = 3600.0
_QUERY_ATTEMPTS = 3  # a file may vanish under a concurrent compaction between listing and read


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_name(prefix: str) -> str:
    return f"{prefix}-{time.time_ns():020d}-{secrets.token_hex(4)}.parquet"


def _split_by_day(table: Any) -> Iterator[tuple[date, Any]]:
    """The table's rows grouped by the UTC day of ``occurred_at`` (vectorised)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    days = table.column("occurred_at").cast(pa.date32())
    unique = pc.unique(days)
    if len(unique) == 1:
        yield unique[0].as_py(), table
        return
    for day in unique:
        yield day.as_py(), table.filter(pc.equal(days, day))


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    import fcntl

    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ParquetLake(FunnelFromQuery):
    """``ParquetLake("cio-relay-data/lake")``: see the module docstring."""

    def __init__(
        self,
        directory: str | Path,
        *,
        flush_rows: int = 100_000,
        flush_interval: float = 60.0,
        compression: str = "zstd",
        compact_max_rows: int = 2_000_000,
        clock: Any = time.time,
    ) -> None:
        if flush_rows < 1:
            raise ValueError(f"flush_rows: must be at least 1, got {flush_rows}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self.compression = compression
        self.compact_max_rows = compact_max_rows
        self._clock = clock
        self._lock = threading.RLock()
        self._buffer: list[LakeEvent] = []
        self._first_buffered_at: float | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"ParquetLake({str(self.directory)!r})"

    # --- writing ----------------------------------------------------------------------------

    def write(self, events: Iterable[LakeEvent]) -> None:
        with self._lock:
            if self._closed:
                raise ValueError("lake: closed")
            before = len(self._buffer)
            self._buffer.extend(events)
            if len(self._buffer) > before and self._first_buffered_at is None:
                self._first_buffered_at = self._clock()
            if self._flush_due():
                self.flush()

    def _flush_due(self) -> bool:
        if len(self._buffer) >= self.flush_rows:
            return True
        first = self._first_buffered_at
        return first is not None and self._clock() - first >= self.flush_interval

    @property
    def buffered(self) -> int:
        """Rows written but not yet in a file."""
        return len(self._buffer)

    def flush(self) -> None:
        """Write the buffer, one new file per day touched (kept buffered if that fails)."""
        with self._lock:
            if not self._buffer:
                return
            table = to_arrow_table(self._buffer)
            for day, part in _split_by_day(table):
                self._write_file(day, part)
            self._buffer = []
            self._first_buffered_at = None

    def _day_dir(self, day: date) -> Path:
        day_dir = self.directory / f"date={day.isoformat()}"
        if not day_dir.is_dir():
            day_dir.mkdir(parents=True, exist_ok=True)
            _fsync_path(self.directory)
        return day_dir

    def _write_unpublished(self, table: Any, final: Path) -> Path:
        """Write ``table`` to ``final``'s ``.tmp`` name and fsync it; return that path."""
        import pyarrow.parquet as pq

        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(table, tmp, compression=self.compression)
        _fsync_path(tmp)
        return tmp

    def _write_atomically(self, table: Any, final: Path) -> None:
        os.replace(self._write_unpublished(table, final), final)
        _fsync_path(final.parent)

    def _write_file(self, day: date, table: Any) -> Path:
        final = self._day_dir(day) / _new_name("part")
        self._write_atomically(table, final)
        return final

    # --- reading ----------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Every data file, by day then name."""
        return sorted(self.directory.glob("date=*/*.parquet"))

    def days(self) -> list[str]:
        """The days (``YYYY-MM-DD``) that have data files."""
        return sorted({p.parent.name.removeprefix("date=") for p in self.files()})

    def _events_dataset(self, files: list[Path]) -> Any:
        """``files`` as one Arrow dataset with the ``date`` partition column, read by pyarrow.

        DuckDB's sandbox (``duck.py``) reaches no file, so pyarrow reads the lake for it: only
        these files (never a ``.tmp`` being written), each against the lake's own schema.
        """
        import pyarrow as pa
        import pyarrow.dataset as ds

        date_field = pa.field("date", pa.date32())
        return ds.dataset(
            [str(path) for path in files],
            schema=arrow_schema().append(date_field),
            format="parquet",
            partitioning=ds.partitioning(pa.schema([date_field]), flavor="hive"),
            partition_base_dir=str(self.directory),
        )

    def query(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        import duckdb

        self.flush()
        for attempt in range(_QUERY_ATTEMPTS):
            files = self.files()
            con = connect()
            try:
                con.register("lake_rows", self._events_dataset(files))
                create_events_view(con, "lake_rows", add_date=False)
                return QueryResult(*run_query(con, sql, params))
            except (duckdb.Error, OSError):
                vanished = any(not path.exists() for path in files)
                if not vanished or attempt == _QUERY_ATTEMPTS - 1:
                    raise
            finally:
                con.close()
        raise AssertionError("unreachable")  # pragma: no cover

    # --- compaction -------------------------------------------------------------------------

    def compact(self) -> CompactionReport:
        """Merge each day's small files into one and drop duplicate event ids."""
        days: list[str] = []
        totals = [0, 0, 0, 0]  # files before, files after, rows, duplicates
        with self._lock, _exclusive(self.directory / ".compaction.lock"):
            for day_dir in sorted(self.directory.glob("date=*")):
                if not day_dir.is_dir():
                    continue
                self._recover(day_dir)
                for group in self._groups(day_dir):
                    rows, duplicates = self._compact_group(day_dir, group)
                    days.append(day_dir.name.removeprefix("date="))
                    totals[0] += len(group)
                    totals[1] += 1
                    totals[2] += rows
                    totals[3] += duplicates
        return CompactionReport(
            days=sorted(set(days)),
            files_before=totals[0],
            files_after=totals[1],
            rows=totals[2],
            duplicates_removed=totals[3],
        )

    def _groups(self, day_dir: Path) -> list[list[Path]]:
        """Runs of small files to merge, each under ``compact_max_rows`` rows."""
        import pyarrow.parquet as pq

        groups: list[list[Path]] = []
        current: list[Path] = []
        rows = 0
        for path in sorted(day_dir.glob("*.parquet")):
            count = pq.read_metadata(path).num_rows
            if count >= self.compact_max_rows:
                continue  # already big enough
            if current and rows + count > self.compact_max_rows:
                groups.append(current)
                current, rows = [], 0
            current.append(path)
            rows += count
        groups.append(current)
        return [group for group in groups if len(group) > 1]

    def _compact_group(self, day_dir: Path, group: list[Path]) -> tuple[int, int]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        merged = pa.concat_tables([pq.read_table(path) for path in group])
        unique = self._deduplicated(merged)
        final = day_dir / _new_name("compacted")
        tmp = self._write_unpublished(unique, final)
        written = pq.read_metadata(tmp).num_rows
        if written != unique.num_rows:  # never swap in a file we cannot vouch for
            tmp.unlink()
            raise OSError(
                f"compaction of {day_dir.name}: wrote {written} of {unique.num_rows} rows"
            )
        journal = {"new": final.name, "old": [path.name for path in group]}
        self._write_journal(day_dir, journal)
        os.replace(tmp, final)
        _fsync_path(day_dir)
        self._finish(day_dir, journal)
        return unique.num_rows, merged.num_rows - unique.num_rows

    def _deduplicated(self, table: Any) -> Any:
        """One row per event id (the first received), ordered by ``occurred_at``."""
        con = connect()
        try:
            con.register("day_rows", table)
            result = con.sql(
                "SELECT * FROM day_rows QUALIFY row_number() OVER "
                "(PARTITION BY event_id ORDER BY received_at, raw) = 1 "
                "ORDER BY occurred_at, event_id"
            ).to_arrow_table()
        finally:
            con.close()
        return result.cast(arrow_schema())

    @staticmethod
    def _write_journal(day_dir: Path, journal: dict[str, Any]) -> None:
        path = day_dir / _JOURNAL
        tmp = day_dir / (_JOURNAL + ".tmp")
        tmp.write_bytes(orjson.dumps(journal))
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(day_dir)

    @staticmethod
    def _finish(day_dir: Path, journal: dict[str, Any]) -> None:
        for name in journal["old"]:
            (day_dir / name).unlink(missing_ok=True)
        (day_dir / _JOURNAL).unlink(missing_ok=True)
        _fsync_path(day_dir)

    def _recover(self, day_dir: Path) -> None:
        """Finish or undo a compaction that was interrupted; drop stale temporary files."""
        path = day_dir / _JOURNAL
        if path.exists():
            journal = orjson.loads(path.read_bytes())
            if (day_dir / journal["new"]).exists():
                self._finish(day_dir, journal)  # the new file is in place: the old go
            else:
                (day_dir / (journal["new"] + ".tmp")).unlink(missing_ok=True)
                path.unlink()  # the swap never happened: the old files stay
        cutoff = time.time() - _STALE_TMP_SECONDS
        for tmp in day_dir.glob("*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.flush()
            self._closed = True

    def __enter__(self) -> ParquetLake:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
