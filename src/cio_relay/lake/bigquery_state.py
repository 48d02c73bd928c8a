"""What the BigQuery loader did, day by day: a small SQLite file beside the lake.

One row per (table, day): the fingerprint of the day's files last sent, the job id and attempt,
the status (``loading`` while a job is out, then ``loaded`` or ``failed``), the rows, and for a
failure its reason (``bigquery_jobs.FAILURE_REASONS``) and message. The loader reads it to skip
unchanged days and to resume: a row still ``loading`` after a restart names the job that was
out, which is looked up again (its deterministic id answers 409 in BigQuery) instead of loading
the day twice. Losing the file costs a reload, never a duplicate: the ids come out the same.

``read_summary`` is for other processes (the dashboard): a read-only connection per call that
never creates the file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cio_relay.sqlite import Database, Steps

__all__ = ["DayLoad", "LoadState", "LoadSummary", "read_summary", "state_path_for"]

Status = Literal["loading", "loaded", "failed"]

_STEPS: Steps = {
    1: [
        "CREATE TABLE bigquery_loads ("
        " table_id TEXT NOT NULL, day TEXT NOT NULL, fingerprint TEXT NOT NULL,"
        " job_id TEXT, attempt INTEGER NOT NULL, status TEXT NOT NULL, rows INTEGER,"
        " reason TEXT, error TEXT, updated_at REAL NOT NULL, loaded_at REAL,"
        " PRIMARY KEY (table_id, day)) WITHOUT ROWID"
    ]
}
_COLUMNS = "day, fingerprint, job_id, attempt, status, rows, reason, error, updated_at, loaded_at"
_MAX_ERROR = 500  # characters of a failure message kept (BigQuery's can be long)
_SHOWN_FAILURES = 5


@dataclass(frozen=True, slots=True)
class DayLoad:
    """One day's row (``loaded_at``: the last success, kept through later failures)."""

    day: str
    fingerprint: str
    job_id: str | None
    attempt: int
    status: Status
    rows: int | None
    reason: str | None
    error: str | None
    updated_at: float
    loaded_at: float | None


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """What the dashboard and the metrics show for one table."""

    table: str
    loaded: int = 0
    failed: int = 0
    loading: int = 0
    last_loaded_at: float | None = None
    failed_by_reason: tuple[tuple[str, int], ...] = ()
    failures: tuple[DayLoad, ...] = ()  # the newest days failing, newest first


def state_path_for(lake_directory: str | Path) -> Path:
    """``cio-relay-data/lake`` -> ``cio-relay-data/lake-bigquery.db``."""
    directory = Path(lake_directory)
    return directory.with_name(directory.name + "-bigquery.db")


class LoadState:
    """``LoadState(path)``: see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self._db = Database(path, store="BigQuery load state", steps=_STEPS)
        self.path = self._db.path

    def __repr__(self) -> str:
        return f"LoadState({str(self.path)!r})"

    def days(self, table: str) -> dict[str, DayLoad]:
        rows = self._db.read(
            f"SELECT {_COLUMNS} FROM bigquery_loads WHERE table_id = ?",  # noqa: S608
            (table,),
        )
        return {row[0]: DayLoad(*row) for row in rows}

    def begin(
        self, table: str, day: str, *, fingerprint: str, job_id: str, attempt: int, now: float
    ) -> None:
        """Record that ``job_id`` is about to be sent (before it is: a crash then resumes it)."""
        self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO bigquery_loads (table_id, day, fingerprint, job_id, attempt,"
                " status, updated_at) VALUES (?, ?, ?, ?, ?, 'loading', ?)"
                " ON CONFLICT (table_id, day) DO UPDATE SET fingerprint = excluded.fingerprint,"
                " job_id = excluded.job_id, attempt = excluded.attempt, status = 'loading',"
                " reason = NULL, error = NULL, updated_at = excluded.updated_at",
                (table, day, fingerprint, job_id, attempt, now),
            )
        )

    def loaded(self, table: str, day: str, *, rows: int, now: float) -> None:
        self._db.write(
            lambda conn: conn.execute(
                "UPDATE bigquery_loads SET status = 'loaded', rows = ?, reason = NULL,"
                " error = NULL, updated_at = ?, loaded_at = ? WHERE table_id = ? AND day = ?",
                (rows, now, now, table, day),
            )
        )

    def failed(
        self,
        table: str,
        day: str,
        *,
        fingerprint: str,
        reason: str,
        error: str,
        now: float,
    ) -> None:
        """Record a failure; a day that never got as far as a job gets a row too."""
        self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO bigquery_loads (table_id, day, fingerprint, attempt, status,"
                " reason, error, updated_at) VALUES (?, ?, ?, 0, 'failed', ?, ?, ?)"
                " ON CONFLICT (table_id, day) DO UPDATE SET fingerprint = excluded.fingerprint,"
                " status = 'failed', reason = excluded.reason, error = excluded.error,"
                " updated_at = excluded.updated_at",
                (table, day, fingerprint, reason, error[:_MAX_ERROR], now),
            )
        )

    def summary(self, table: str) -> LoadSummary:
        return self._db.read_together(lambda conn: _summary(conn, table))

    def close(self) -> None:
        self._db.close()


def _summary(conn: sqlite3.Connection, table: str) -> LoadSummary:
    counts = dict(
        conn.execute(
            "SELECT status, count(*) FROM bigquery_loads WHERE table_id = ? GROUP BY status",
            (table,),
        ).fetchall()
    )
    (last_loaded_at,) = conn.execute(
        "SELECT max(loaded_at) FROM bigquery_loads WHERE table_id = ?", (table,)
    ).fetchone()
    by_reason = conn.execute(
        "SELECT coalesce(reason, 'other'), count(*) FROM bigquery_loads"
        " WHERE table_id = ? AND status = 'failed' GROUP BY 1 ORDER BY 1",
        (table,),
    ).fetchall()
    failures = conn.execute(
        f"SELECT {_COLUMNS} FROM bigquery_loads WHERE table_id = ? AND status = 'failed'"  # noqa: S608
        " ORDER BY day DESC LIMIT ?",
        (table, _SHOWN_FAILURES),
    ).fetchall()
    return LoadSummary(
        table=table,
        loaded=counts.get("loaded", 0),
        failed=counts.get("failed", 0),
        loading=counts.get("loading", 0),
        last_loaded_at=last_loaded_at,
        failed_by_reason=tuple((reason, count) for reason, count in by_reason),
        failures=tuple(DayLoad(*row) for row in failures),
    )


def read_summary(path: str | Path, table: str) -> LoadSummary:
    """``table``'s summary from the file at ``path``, read-only; empty if there is none yet."""
    path = Path(path)
    if not path.exists():
        return LoadSummary(table=table)
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
        try:
            return _summary(conn, table)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # created, not yet migrated
                return LoadSummary(table=table)
            raise
