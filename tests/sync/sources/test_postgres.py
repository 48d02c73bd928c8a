"""``PostgresSource`` against a real PostgreSQL server (tests/fixtures/postgres_server.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import psycopg
import pytest

from cio_relay.errors import ConfigError
from cio_relay.sync.sources import PostgresSource, Unconvertible, open_source
from cio_relay.sync.spec import SyncSpec
from tests.sync.sources.conftest import rows_of


def run(url: str, *statements: str) -> None:
    with psycopg.connect(url) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def opened() -> Iterator[list[PostgresSource]]:
    """Sources a test opened, closed after it."""
    sources: list[PostgresSource] = []
    yield sources
    for source in sources:
        source.close()


def source_for(opened: list[PostgresSource], **fields: Any) -> PostgresSource:
    source = open_source(SyncSpec(**fields))
    assert isinstance(source, PostgresSource)
    opened.append(source)
    return source


def test_column_types_become_attribute_values(
    postgres_url: str, opened: list[PostgresSource]
) -> None:
    account = uuid.UUID("12345678-1234-5678-1234-567812345678")
    run(
        postgres_url,
        "CREATE TABLE people (id int, signed_up timestamptz, seen timestamp, born date,"
        " balance numeric(10, 2), visits numeric, profile jsonb, account uuid, avatar bytea,"
        " ratio float8, tags text[], active boolean, note text)",
        "INSERT INTO people VALUES (1, '2026-01-01 02:00:00+02', '2026-01-01 00:00:30',"
        ' \'1990-05-17\', 12.50, 42, \'{"a": [1, 2.5, null], "b": {"c": true}}\','
        " '12345678-1234-5678-1234-567812345678',"
        " '\\x00ff', 'NaN', '{x,y}', true, NULL)",
    )
    source = source_for(opened, source=postgres_url, table="people")

    [row] = rows_of(source)

    assert row.key == 1
    assert row.attributes == {
        "signed_up": 1767225600,  # 2026-01-01T00:00:00Z
        "seen": 1767225630,  # a timestamp without zone is UTC
        "born": "1990-05-17",
        "balance": 12.5,
        "visits": 42,
        "profile": {"a": [1, 2.5, None], "b": {"c": True}},
        "account": str(account),
        "avatar": Unconvertible("bytes has no JSON form"),
        "ratio": Unconvertible("non-finite number nan"),
        "tags": ["x", "y"],
        "active": True,
        "note": None,
    }


def test_infinite_times_are_one_unconvertible_row_each(
    postgres_url: str, opened: list[PostgresSource]
) -> None:
    run(
        postgres_url,
        "CREATE TABLE people (id int, changed timestamptz, born date, seen timestamp)",
        "INSERT INTO people VALUES (1, 'infinity', '-infinity', 'infinity'),"
        " (2, '1970-01-01 00:01:40Z', '1970-01-02', '1970-01-01')",
    )
    source = source_for(opened, source=postgres_url, table="people", updated_at_column="changed")

    first, second = rows_of(source)

    assert first.updated_at is None
    assert first.attributes == {
        "changed": Unconvertible("'infinity' has no JSON form (no finite time)"),
        "born": Unconvertible("'-infinity' has no JSON form (no finite time)"),
        "seen": Unconvertible("'infinity' has no JSON form (no finite time)"),
    }
    assert (second.updated_at, second.attributes) == (100.0, {"born": "1970-01-02", "seen": 0})


def test_a_query_is_read_with_its_own_columns_and_percent_signs(
    postgres_url: str, opened: list[PostgresSource]
) -> None:
    run(
        postgres_url,
        "CREATE TABLE accounts (id int, email text, plan text)",
        "INSERT INTO accounts VALUES (3, 'c@example.com', 'pro'), (1, 'a@example.com', 'free'),"
        " (2, 'b@other.org', 'pro')",
    )
    query = (
        "SELECT email AS person, upper(plan) AS plan FROM accounts"
        " WHERE email LIKE '%@example.com';"
    )
    source = source_for(opened, source=postgres_url, query=query, id_column="person")

    rows = rows_of(source)

    assert [(row.key, row.attributes) for row in rows] == [
        ("a@example.com", {"plan": "FREE"}),
        ("c@example.com", {"plan": "PRO"}),
    ]
    assert rows_of(source, after="a@example.com")[0].key == "c@example.com"


def test_identifiers_are_quoted_not_formatted(
    postgres_url: str, opened: list[PostgresSource]
) -> None:
    run(
        postgres_url,
        'CREATE SCHEMA "Crm"',
        'CREATE TABLE "Crm"."People ""Main""" ("User ID" text, "Changed At" timestamptz)',
        'INSERT INTO "Crm"."People ""Main""" VALUES (\'u1\', \'2026-01-01Z\'),'
        " ('u2', '2026-02-01Z')",
    )
    source = source_for(
        opened,
        source=postgres_url,
        table='Crm.People "Main"',
        id_column="User ID",
        updated_at_column="Changed At",
    )

    assert [row.key for row in rows_of(source, since=1767225600.0)] == ["u2"]


def test_uuid_keys_resume_after_a_uuid(postgres_url: str, opened: list[PostgresSource]) -> None:
    keys = sorted(uuid.UUID(int=n * 7919) for n in range(1, 6))
    run(postgres_url, "CREATE TABLE people (id uuid, name text)")
    with psycopg.connect(postgres_url) as conn, conn.cursor() as cursor:
        cursor.executemany("INSERT INTO people VALUES (%s, 'x')", [(key,) for key in keys])
    source = source_for(opened, source=postgres_url, table="people")

    assert [row.key for row in rows_of(source, after=keys[1])] == keys[2:]


def test_numeric_and_naive_updated_at_columns_filter_by_seconds(
    postgres_url: str, opened: list[PostgresSource]
) -> None:
    run(
        postgres_url,
        "CREATE TABLE people (id int, changed bigint, seen timestamp)",
        "INSERT INTO people VALUES (1, 100, '1970-01-01 00:01:40'),"
        " (2, 200, '1970-01-01 00:03:20')",
    )
    by_number = source_for(opened, source=postgres_url, table="people", updated_at_column="changed")
    by_time = source_for(opened, source=postgres_url, table="people", updated_at_column="seen")

    assert [(row.key, row.updated_at) for row in rows_of(by_number, since=100.0)] == [(2, 200.0)]
    assert [(row.key, row.updated_at) for row in rows_of(by_time, since=100.0)] == [(2, 200.0)]


def test_rows_stream_through_a_server_side_cursor(
    postgres_url: str, opened: list[PostgresSource]
) -> None:
    query = (
        "SELECT g AS id, 'user' || g || '@example.com' AS email FROM generate_series(1, 50000) g"
    )
    source = source_for(opened, source=postgres_url, query=query, name="stream")
    batches = source.batches(after=None, since=None, batch_size=1000)

    first = next(batches)
    with psycopg.connect(postgres_url) as conn:
        activity = conn.execute(
            "SELECT state, query FROM pg_stat_activity WHERE application_name = %s",
            ("cio-relay sync stream",),
        ).fetchone()
    later = [len(batch) for batch in batches]

    # The server holds the result; the source took one FETCH of batch_size from a named cursor.
    assert activity is not None
    state, last_statement = activity
    assert state == "idle in transaction"
    assert last_statement.startswith('FETCH FORWARD 1000 FROM "cio_relay_sync_')
    assert [row.key for row in first] == list(range(1, 1001))
    assert later == [1000] * 49


def test_the_connection_is_read_only(postgres_url: str, opened: list[PostgresSource]) -> None:
    run(
        postgres_url,
        "CREATE TABLE people (id int)",
        "CREATE TABLE audit (at timestamptz)",
        "INSERT INTO people VALUES (1)",
        "CREATE FUNCTION audited(person int) RETURNS int LANGUAGE sql"
        " AS 'INSERT INTO audit VALUES (now()) RETURNING person'",
    )
    source = source_for(opened, source=postgres_url, query="SELECT audited(id) AS id FROM people")

    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        rows_of(source)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (0,)


@pytest.mark.parametrize(
    ("column_type", "field", "message"),
    [
        ("float8", "id_column", r"id_column: 'id' has type float8"),
        ("text", "updated_at_column", r"updated_at_column: 'changed' has type text"),
    ],
)
def test_columns_a_source_cannot_order_or_filter_by_are_refused(
    postgres_url: str, column_type: str, field: str, message: str
) -> None:
    run(postgres_url, f"CREATE TABLE people (id {column_type}, changed {column_type})")
    spec = SyncSpec(source=postgres_url, table="people", updated_at_column="changed")

    with pytest.raises(ConfigError, match=message):
        open_source(spec)


def test_a_table_or_query_the_database_refuses_is_a_config_error(postgres_url: str) -> None:
    with pytest.raises(ConfigError, match=r"table 'missing': relation \"missing\" does not exist"):
        open_source(SyncSpec(source=postgres_url, table="missing"))
    with pytest.raises(ConfigError, match=r"query 'SELEC 1': syntax error"):
        open_source(SyncSpec(source=postgres_url, query="SELEC 1"))
    with pytest.raises(ConfigError, match=r"more than one column named email"):
        open_source(
            SyncSpec(source=postgres_url, query="SELECT 1 AS id, 'a' AS email, 'b' AS email")
        )


def test_no_password_in_the_description_or_errors(postgres_url: str) -> None:
    run(postgres_url, "CREATE TABLE people (id int, numeric_id numeric)")
    secret = "s3cret-Pa55"
    with_password = postgres_url.replace("postgres@", f"postgres:{secret}@") + "?connect_timeout=5"
    missing_database = with_password.rsplit("/", 1)[0] + "/nowhere"
    problems: list[str] = []

    with closing(open_source(SyncSpec(source=with_password, table="people"))) as source:
        problems.append(source.description)
    for spec in (
        SyncSpec(source=with_password, table="absent"),
        SyncSpec(source=with_password, table="people", id_column="numeric_id"),
        SyncSpec(source=with_password, table="people", id_column="nope"),
        SyncSpec.model_construct(source=with_password),  # neither query nor table
        SyncSpec(source=missing_database, table="people"),
        SyncSpec(source=with_password + "&bogus=1", table="people"),
        SyncSpec(source=f"postgresql://postgres:{secret}@[::1/db", table="people"),
    ):
        with pytest.raises((ConfigError, psycopg.OperationalError)) as caught:
            open_source(spec)
        problems.append(str(caught.value))

    assert problems[0] == with_password.replace(f":{secret}", "")
    assert all(secret not in problem for problem in problems), problems
    assert 'database "nowhere" does not exist' in problems[-3]
    assert 'invalid URI query parameter: "bogus"' in problems[-2]
    assert 'matching "]" in IPv6 host address' in problems[-1]


def test_a_numeric_key_is_refused_with_the_cast_to_write(postgres_url: str) -> None:
    run(postgres_url, "CREATE TABLE people (id numeric)", "INSERT INTO people VALUES (1)")

    with pytest.raises(ConfigError, match=r"id::text or id::bigint"):
        open_source(SyncSpec(source=postgres_url, table="people"))


def test_json_integers_past_64_bits_stay_exact_and_are_reported(
    postgres_url: str, opened: list[PostgresSource]
) -> None:
    # orjson would read 123...890 as a float; such a document is read exactly instead.
    run(
        postgres_url,
        "CREATE TABLE people (id int, profile jsonb, phone json)",
        "INSERT INTO people VALUES (1, '{\"n\": 1234567890123456789012345678901}', NULL),"
        ' (2, \'{"n": 9007199254740993, "s": "x"}\', \'{"phone": "+15555550100"}\')',
    )
    source = source_for(opened, source=postgres_url, table="people")

    first, second = rows_of(source)

    assert first.attributes["profile"] == Unconvertible("n: integer beyond 64 bits")
    assert second.attributes == {
        "profile": {"n": 9007199254740993, "s": "x"},  # past a double's 53 bits, exact
        "phone": {"phone": "+15555550100"},
    }
