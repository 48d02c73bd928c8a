"""``SqliteSource`` on real SQLite files."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from cio_relay.errors import ConfigError
from cio_relay.sync.sources import SqliteSource, Unconvertible, open_source
from cio_relay.sync.spec import SyncSpec
from tests.sync.sources.conftest import rows_of


def database(path: Path, *statements: str) -> str:
    with closing(sqlite3.connect(path)) as conn, conn:
        for statement in statements:
            conn.execute(statement)
    return f"sqlite:///{path}"


def test_a_column_of_integers_and_texts_resumes_in_sqlite_order(tmp_path: Path) -> None:
    url = database(
        tmp_path / "app.db",
        "CREATE TABLE people (id, name TEXT)",  # no type: each value keeps its own
        "INSERT INTO people VALUES ('b', 'x'), (10, 'x'), ('a', 'x'), (9, 'x'), ('10', 'x')",
    )
    with closing(open_source(SyncSpec(source=url, table="people"))) as source:
        keys = [row.key for row in rows_of(source, batch_size=2)]
        after_an_integer = [row.key for row in rows_of(source, after=10)]

    # Every integer before every text, both in ORDER BY and in "> after".
    assert keys == [9, 10, "10", "a", "b"]
    assert after_an_integer == ["10", "a", "b"]


def test_a_key_neither_integer_nor_text_is_reported_with_its_row(tmp_path: Path) -> None:
    url = database(
        tmp_path / "app.db",
        "CREATE TABLE people (id REAL, name TEXT, photo BLOB)",
        "INSERT INTO people VALUES (1.5, 'x', x'00ff'), (2, 'y', NULL)",
    )
    with closing(open_source(SyncSpec(source=url, table="people"))) as source:
        rows = rows_of(source)
        resumed = rows_of(source, after=rows[0].key)

    assert rows[0].key == 1.5
    assert rows[0].attributes == {
        "name": "x",
        "photo": Unconvertible("bytes has no JSON form"),
        "id": Unconvertible("an identifier is an integer or text, not float 1.5"),
    }
    assert [row.key for row in resumed] == [2.0]


def test_updated_at_as_seconds_or_iso_text_and_anything_else_reported(tmp_path: Path) -> None:
    url = database(
        tmp_path / "app.db",
        "CREATE TABLE people (id INTEGER PRIMARY KEY, changed)",
        "INSERT INTO people VALUES (1, 100), (2, '1970-01-01T00:03:20+00:00'),"
        " (3, '1970-01-01 02:05:00+02:00'), (4, 'yesterday'), (5, NULL)",
    )
    spec = SyncSpec(source=url, table="people", updated_at_column="changed")
    with closing(open_source(spec)) as source:
        everyone = rows_of(source)
        since = rows_of(source, since=100.0)

    assert [row.updated_at for row in everyone] == [100.0, 200.0, 300.0, None, None]
    assert everyone[3].attributes == {
        "changed": Unconvertible("'yesterday' is not an ISO 8601 time")
    }
    assert [row.key for row in since] == [2, 3]


def test_a_query_with_quoted_identifiers(tmp_path: Path) -> None:
    url = database(
        tmp_path / "app.db",
        'CREATE TABLE "app ""users""" ("user id" TEXT, "e-mail" TEXT)',
        "INSERT INTO \"app \"\"users\"\"\" VALUES ('u2', 'b@x'), ('u1', 'a@x')",
    )
    query = (
        'SELECT "user id", "e-mail" AS "e-mail" FROM "app ""users""" WHERE "e-mail" LIKE \'%@x\''
    )
    with closing(open_source(SyncSpec(source=url, query=query, id_column="user id"))) as source:
        rows = rows_of(source)

    assert [(row.key, row.attributes) for row in rows] == [
        ("u1", {"e-mail": "a@x"}),
        ("u2", {"e-mail": "b@x"}),
    ]


def test_the_file_is_opened_read_only(tmp_path: Path) -> None:
    url = database(tmp_path / "app.db", "CREATE TABLE people (id INTEGER)")
    with closing(open_source(SyncSpec(source=url, table="people"))) as source:
        assert isinstance(source, SqliteSource)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            source._conn.execute("INSERT INTO people VALUES (1)")


def test_a_missing_file_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "absent.db"

    with pytest.raises(ConfigError, match=r"source: no SQLite file at '.*absent\.db'"):
        open_source(SyncSpec(source=f"sqlite:///{missing}", table="people"))
    assert not missing.exists()


def test_a_table_or_query_sqlite_refuses_is_a_config_error(tmp_path: Path) -> None:
    url = database(tmp_path / "app.db", "CREATE TABLE people (id INTEGER)")

    with pytest.raises(ConfigError, match=r"table 'users': no such table: users"):
        open_source(SyncSpec(source=url, table="users"))
    with pytest.raises(ConfigError, match=r"query 'SELECT id FRM people': .*syntax error"):
        open_source(SyncSpec(source=url, query="SELECT id FRM people"))
