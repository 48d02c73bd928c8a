"""The BigQuery loader: the Parquet lake's days, each as one load job into its partition.

``cio-relay lake export bigquery --table project.dataset.table`` runs one pass;
``cio-relay run`` with ``CIO_RELAY_BIGQUERY_TABLE`` runs a pass every
``CIO_RELAY_BIGQUERY_INTERVAL`` seconds (``PeriodicLoader``). A pass looks at every day of the
lake (from ``since`` on) and loads each whose files changed since its last successful load: a
closed day once more after its last flush (and once after compaction), the current day on every
interval while webhooks arrive. A day goes up whole (its files streamed into one Parquet upload,
exactly the lake's rows) and replaces BigQuery's copy of that day (``bigquery_jobs.py``: an
idempotent day replace), so a repeated or crashed load never duplicates a row.

A day's *fingerprint* is a hash of its file names and sizes. Lake files are written once under a
unique name and never changed (a flush adds a file, compaction swaps files), so the names and
sizes say whether the content changed without reading it, every pass, for every day.

What each day's load did is recorded in ``LoadState`` (``lake-bigquery.db`` beside the lake):
a restart resumes, an unchanged day is not sent again, and a failure keeps its reason and
message for the dashboard and the metrics. The loader never stops for good: a failure is
recorded and the day is tried again on the next pass; a failure that would fail every day
(quota, auth, an unreachable or missing dataset) ends the pass early. The Parquet lake stays the
source of truth; BigQuery is a copy that catches up.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from cio_relay.errors import ConfigError
from cio_relay.lake.bigquery_jobs import (
    STOPS_A_PASS,
    PartitionLoad,
    StagingReplace,
    TableName,
    classify_failure,
    connect_client,
    failure_text,
    load_job_id,
)
from cio_relay.lake.bigquery_state import DayLoad, LoadState, state_path_for
from cio_relay.lake.schema import arrow_schema

__all__ = [
    "BigQueryLoader",
    "DayFiles",
    "DayResult",
    "LoadStrategy",
    "PeriodicLoader",
    "lake_days",
    "lake_state_path",
    "open_loader",
    "write_day_upload",
]

log = logging.getLogger("cio_relay.lake.bigquery")

Outcome = Literal["loaded", "unchanged", "failed"]
_LISTING_ATTEMPTS = 3  # a compaction may swap a day's files while they are listed


class LoadStrategy(Protocol):
    name: str

    def replace_day(
        self, client: Any, table: TableName, day: date, source: IO[bytes], job_id: str
    ) -> int:
        """Make BigQuery's copy of ``day`` the Parquet in ``source``; the rows loaded."""

    def settle(self, client: Any, table: TableName, job_id: str) -> None:
        """Wait for an earlier job of a day, if it may still write it."""


@dataclass(frozen=True, slots=True)
class DayFiles:
    """One day of the lake: its files and their fingerprint (module docstring)."""

    day: date
    files: tuple[Path, ...]
    fingerprint: str


@dataclass(frozen=True, slots=True)
class DayResult:
    """What a pass did with one day."""

    day: date
    outcome: Outcome
    rows: int = 0
    seconds: float = 0.0
    job_id: str | None = None
    reason: str | None = None  # a failure's reason: one of bigquery_jobs.FAILURE_REASONS
    error: str | None = None


def _fingerprint(files: list[Path]) -> str:
    listing = "".join(f"{path.name}\t{path.stat().st_size}\n" for path in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def _list_days(directory: Path, since: date | None) -> list[DayFiles]:
    by_day: dict[date, list[Path]] = {}
    for path in sorted(directory.glob("date=*/*.parquet")):
        try:
            day = date.fromisoformat(path.parent.name.removeprefix("date="))
        except ValueError:
            continue  # not a day directory of the lake
        if since is None or day >= since:
            by_day.setdefault(day, []).append(path)
    return [DayFiles(day, tuple(files), _fingerprint(files)) for day, files in by_day.items()]


def lake_days(directory: str | Path, *, since: date | None = None) -> list[DayFiles]:
    """The lake's days (from ``since`` on), oldest first, with their files and fingerprints."""
    for attempt in range(_LISTING_ATTEMPTS):
        try:
            return sorted(_list_days(Path(directory), since), key=lambda day: day.day)
        except FileNotFoundError:  # a file went between the listing and its stat
            if attempt == _LISTING_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def write_day_upload(files: tuple[Path, ...], target: IO[bytes]) -> int:
    """Stream the day's files into one Parquet file on ``target``, batch by batch (memory stays
    bounded by a batch, whatever the day's size); the rows written."""
    import pyarrow.parquet as pq

    schema = arrow_schema()
    rows = 0
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches():
                writer.write_batch(batch.cast(schema))
                rows += batch.num_rows
    return rows


class BigQueryLoader:
    """Loads the lake at ``directory`` into ``table``; ``run_pass`` does one round.

    ``connect()`` makes the BigQuery client (``bigquery_jobs.connect_client``), once per pass,
    so a credential fixed meanwhile is picked up; ``strategy`` replaces a day
    (``PartitionLoad`` in production); ``on_result`` hears every day's result (the metrics).
    """

    def __init__(
        self,
        directory: str | Path,
        table: TableName,
        *,
        state: LoadState,
        connect: Callable[[], Any],
        strategy: LoadStrategy,
        on_result: Callable[[DayResult], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.table = table
        self.state = state
        self.connect = connect
        self.strategy = strategy
        self.on_result = on_result
        self._clock = clock
        self._pass_lock = threading.Lock()  # one pass at a time in this process

    def __repr__(self) -> str:
        return f"BigQueryLoader({str(self.directory)!r}, {str(self.table)!r})"

    def run_pass(self, *, since: date | None = None) -> list[DayResult]:
        """Load every changed day from ``since`` on; the result of each day looked at."""
        with self._pass_lock:
            return list(self._pass(since))

    def _pass(self, since: date | None) -> Iterator[DayResult]:
        table = str(self.table)
        recorded = self.state.days(table)
        client = None
        for day_files in lake_days(self.directory, since=since):
            before = recorded.get(day_files.day.isoformat())
            if _unchanged(before, day_files):
                yield self._report(DayResult(day_files.day, "unchanged"))
                continue
            try:
                client = client or self.connect()
            except Exception as exc:
                result = self._failed(day_files, exc, 0.0, None)
            else:
                result = self._load_day(client, day_files, before)
            yield self._report(result)
            if result.reason in STOPS_A_PASS:
                log.warning("BigQuery: pass stopped at %s (%s)", day_files.day, result.reason)
                return

    def _load_day(self, client: Any, day_files: DayFiles, before: DayLoad | None) -> DayResult:
        day = day_files.day
        attempt = _next_attempt(before, day_files)
        job_id = load_job_id(self.table, day, day_files.fingerprint, attempt)
        started = time.monotonic()
        try:
            if before is not None and before.status == "loading" and before.job_id != job_id:
                self.strategy.settle(client, self.table, before.job_id or "")
            self.state.begin(
                str(self.table),
                day.isoformat(),
                fingerprint=day_files.fingerprint,
                job_id=job_id,
                attempt=attempt,
                now=self._clock(),
            )
            with tempfile.TemporaryFile(dir=self.directory.parent) as upload:
                write_day_upload(day_files.files, upload)
                rows = self.strategy.replace_day(client, self.table, day, upload, job_id)
        except Exception as exc:
            return self._failed(day_files, exc, time.monotonic() - started, job_id)
        self.state.loaded(str(self.table), day.isoformat(), rows=rows, now=self._clock())
        seconds = time.monotonic() - started
        log.info("BigQuery: loaded %s (%d rows, %.1f s, job %s)", day, rows, seconds, job_id)
        return DayResult(day, "loaded", rows=rows, seconds=seconds, job_id=job_id)

    def _failed(
        self, day_files: DayFiles, exc: BaseException, seconds: float, job_id: str | None
    ) -> DayResult:
        reason, error = classify_failure(exc), failure_text(exc)
        log.warning("BigQuery: loading %s failed (%s): %s", day_files.day, reason, error)
        self.state.failed(
            str(self.table),
            day_files.day.isoformat(),
            fingerprint=day_files.fingerprint,
            reason=reason,
            error=error,
            now=self._clock(),
        )
        return DayResult(
            day_files.day, "failed", seconds=seconds, job_id=job_id, reason=reason, error=error
        )

    def _report(self, result: DayResult) -> DayResult:
        if self.on_result is not None:
            self.on_result(result)
        return result

    def close(self) -> None:
        self.state.close()


def _unchanged(before: DayLoad | None, day_files: DayFiles) -> bool:
    return (
        before is not None
        and before.status == "loaded"
        and before.fingerprint == day_files.fingerprint
    )


def _next_attempt(before: DayLoad | None, day_files: DayFiles) -> int:
    """The attempt number of this load: the same as the job still out for the same content
    (resumed: BigQuery answers 409 and the loader waits for that job), else one more."""
    if before is None:
        return 1
    if before.status == "loading" and before.fingerprint == day_files.fingerprint:
        return before.attempt
    return before.attempt + 1


class PeriodicLoader:
    """Runs ``loader.run_pass()`` now and then every ``interval`` seconds on a thread of its
    own, until ``stop``. A pass that raises is logged and the next one runs as usual."""

    def __init__(self, loader: BigQueryLoader, interval: float) -> None:
        self.loader = loader
        self.interval = interval
        self.passes = 0  # passes finished (tests wait on it with ``wait_for_passes``)
        self._stop = threading.Event()
        self._finished = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="cio-relay-bigquery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.loader.run_pass()
            except Exception:
                log.exception("BigQuery: a load pass failed; the next one runs as usual")
            with self._finished:
                self.passes += 1
                self._finished.notify_all()
            self._stop.wait(self.interval)

    def wait_for_passes(self, count: int, timeout: float) -> bool:
        """True once ``count`` passes have finished, False after ``timeout`` seconds."""
        with self._finished:
            return self._finished.wait_for(lambda: self.passes >= count, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the load in progress, if any (waiting up to ``timeout`` seconds: a load
        cut short is resumed from the state at the next start)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.loader.close()


def _lake_directory(lake_url: str | Path) -> Path:
    text = str(lake_url)
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(
            f"BigQuery loader: the lake must be a directory of Parquet files, not {text[:80]!r}"
        )
    return Path(text.removeprefix("file://"))


def lake_state_path(lake_url: str | Path) -> Path:
    """Where the load state of the lake at ``lake_url`` lives (ConfigError: not a directory)."""
    return state_path_for(_lake_directory(lake_url))


def open_loader(
    lake_url: str | Path,
    table: str,
    *,
    emulator: str | None = None,
    on_result: Callable[[DayResult], None] | None = None,
) -> BigQueryLoader:
    """The loader of the Parquet lake at ``lake_url`` into ``table`` (``project.dataset.table``),
    its state beside the lake; against the emulator at ``emulator`` when given.

    Raises ``ConfigError`` for a table name that is not one, a lake that is not a directory, or
    a missing ``google-cloud-bigquery`` (``pip install 'cio-relay[bigquery]'``).
    """
    name = TableName(table)
    directory = _lake_directory(lake_url)
    try:
        import google.cloud.bigquery  # noqa: F401  (checked now, not at the first pass)
    except ImportError as exc:
        raise ConfigError("BigQuery loader: pip install 'cio-relay[bigquery]'") from exc
    strategy: LoadStrategy = StagingReplace() if emulator else PartitionLoad()
    return BigQueryLoader(
        directory,
        name,
        state=LoadState(state_path_for(directory)),
        connect=lambda: connect_client(name, emulator=emulator),
        strategy=strategy,
        on_result=on_result,
    )
