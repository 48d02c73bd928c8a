"""``open_source``: which source a URL names, and the errors for one that names none."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cio_relay.errors import ConfigError
from cio_relay.sync.sources import FileSource, PostgresSource, SqliteSource, open_source
from cio_relay.sync.spec import SyncSpec


@pytest.fixture
def files(tmp_path: Path) -> Path:
    with closing(sqlite3.connect(tmp_path / "app.db")) as conn:
        conn.execute("CREATE TABLE people (id INTEGER)")
    for name in ("people.csv", "people.tsv", "people.dat"):
        (tmp_path / name).write_text("id\n1\n")
    for name in ("people.parquet", "people.pq", "people.bin"):
        pq.write_table(pa.table({"id": [1]}), tmp_path / name)
    return tmp_path


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("sqlite:///{dir}/app.db", SqliteSource),
        ("{dir}/people.csv", FileSource),
        ("{dir}/people.tsv", FileSource),
        ("csv:{dir}/people.dat", FileSource),
        ("{dir}/people.parquet", FileSource),
        ("{dir}/people.pq", FileSource),
        ("parquet:{dir}/people.bin", FileSource),
    ],
)
def test_the_url_names_the_source(files: Path, source: str, kind: type) -> None:
    url = source.format(dir=files)
    table = "people" if url.startswith("sqlite") else None

    with closing(open_source(SyncSpec(source=url, table=table))) as opened:
        assert isinstance(opened, kind)
        assert opened.description == url


def test_postgresql_and_postgres_schemes_open_a_postgres_source(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE people (id int)")

    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://")):
        with closing(open_source(SyncSpec(source=url, table="people"))) as opened:
            assert isinstance(opened, PostgresSource)


@pytest.mark.parametrize(
    "url",
    ["mysql://app:hunter2@db/crm", "people.xlsx", "https://app:hunter2@example.com/people.csv"],
)
def test_a_url_that_names_no_source_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^source: '.*' names no source") as caught:
        open_source(SyncSpec(source=url))

    assert "hunter2" not in str(caught.value)
    assert url.replace(":hunter2", "") in str(caught.value)


@pytest.mark.parametrize("url", ["sqlite://app.db", "sqlite:///"])
def test_a_sqlite_url_without_a_path_shows_the_spelling(url: str) -> None:
    with pytest.raises(ConfigError, match=r"write sqlite:///relative/path\.db"):
        open_source(SyncSpec(source=url, table="people"))


@pytest.mark.parametrize(
    "scheme", ["sqlite:///{dir}/app.db", "postgresql://app:hunter2@nowhere/db"]
)
def test_a_database_needs_one_of_query_and_table(files: Path, scheme: str) -> None:
    url = scheme.format(dir=files)
    both = SyncSpec.model_construct(source=url, query="SELECT 1 AS id", table="people")

    with pytest.raises(ConfigError, match=r"^source: give query or table, not both$"):
        open_source(both)
    with pytest.raises(ConfigError, match=r"a database source needs a query or a table") as caught:
        open_source(SyncSpec(source=url))
    assert "hunter2" not in str(caught.value)
