"""The same people in every kind of source, for the contract tests (test_contract.py).

The ``people`` fixture writes ``PEOPLE`` (plus a row without an id, which every source skips)
into a real PostgreSQL database, a SQLite file, a CSV file or a Parquet file, and opens sources
on it with any ``SyncSpec`` field overridden.
"""

from __future__ import annotations

import csv
import random
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cio_relay.sync.sources import Source, SourceRow, open_source
from cio_relay.sync.spec import SyncSpec
from tests.fixtures.postgres_server import PostgresServer

KINDS = ("postgres", "sqlite", "csv", "parquet")
START = datetime(2026, 1, 1, tzinfo=UTC)


def person(number: int) -> tuple[int, str, str, float, datetime]:
    """id, email, plan, score, updated_at (an hour apart)."""
    plan = "pro" if number % 3 == 0 else "free"
    return number, f"user{number}@example.com", plan, number / 4, START + timedelta(hours=number)


#: Written in a shuffled order, so the sources' key order is their own ORDER BY.
PEOPLE = [person(number) for number in random.Random(14).sample(range(1, 26), 25)]
NO_ID = (None, "nobody@example.com", "free", 0.0, START)


def expected(number: int) -> SourceRow:
    _id, email, plan, score, updated_at = person(number)
    attributes = {"email": email, "plan": plan, "score": score}
    return SourceRow(key=number, attributes=attributes, updated_at=updated_at.timestamp())


def read_all(source: Source, **options: Any) -> list[list[SourceRow]]:
    """Every batch ``batches`` yields (``after=None``, ``since=None``, ``batch_size=10`` unless
    given)."""
    arguments: dict[str, Any] = {"after": None, "since": None, "batch_size": 10, **options}
    return list(source.batches(**arguments))


def rows_of(source: Source, **options: Any) -> list[SourceRow]:
    return [row for batch in read_all(source, **options) for row in batch]


def write_postgres(url: str) -> str:
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE people (id bigint, email text, plan text, score float8,"
            " updated_at timestamptz)"
        )
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO people VALUES (%s, %s, %s, %s, %s)", [*PEOPLE, NO_ID])
    return url


def write_sqlite(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE people (id INTEGER, email TEXT, plan TEXT, score REAL, updated_at TEXT)"
        )
        # Times as CURRENT_TIMESTAMP writes them: ISO 8601 text in UTC, without a zone.
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, ?, ?, ?)",
            [(*row[:4], row[4].strftime("%Y-%m-%d %H:%M:%S")) for row in [*PEOPLE, NO_ID]],
        )
    return f"sqlite:///{path}"


def write_csv(path: Path) -> str:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "email", "plan", "score", "updated_at"])
        for row in [*PEOPLE, NO_ID]:
            writer.writerow([*row[:4], row[4].strftime("%Y-%m-%d %H:%M:%S")])
    return str(path)


def write_parquet(path: Path) -> str:
    columns = list(zip(*[*PEOPLE, NO_ID], strict=True))
    table = pa.table(
        {
            "id": pa.array(columns[0], pa.int64()),
            "email": pa.array(columns[1], pa.string()),
            "plan": pa.array(columns[2], pa.string()),
            "score": pa.array(columns[3], pa.float64()),
            "updated_at": pa.array(columns[4], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path)
    return str(path)


class People:
    """``PEOPLE`` written to a source of ``kind`` at ``url``; ``open(**spec_fields)`` reads it."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.opened: list[Source] = []

    def open(self, **fields: Any) -> Source:
        table = "people" if self.kind in ("postgres", "sqlite") else None
        spec = SyncSpec(**{"source": self.url, "table": table, **fields})
        self.opened.append(open_source(spec))
        return self.opened[-1]


@pytest.fixture(scope="module")
def people_database(postgres_server: PostgresServer) -> Iterator[str]:
    """One database of ``PEOPLE`` for a module's tests, which only read it."""
    name = f"people_{uuid.uuid4().hex[:12]}"
    yield write_postgres(postgres_server.create_database(name))
    postgres_server.drop_database(name)


@pytest.fixture(params=KINDS)
def people(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[People]:
    """``PEOPLE`` in a source of each kind; every source opened is closed after the test."""
    kind: str = request.param
    if kind == "postgres":
        url = request.getfixturevalue("people_database")
    elif kind == "sqlite":
        url = write_sqlite(tmp_path / "app.db")
    elif kind == "csv":
        url = write_csv(tmp_path / "people.csv")
    else:
        url = write_parquet(tmp_path / "people.parquet")
    written = People(kind, url)
    yield written
    for source in written.opened:
        source.close()
