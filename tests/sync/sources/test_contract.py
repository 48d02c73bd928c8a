"""What every source promises (base.py), run against PostgreSQL, SQLite, CSV and Parquet."""

from __future__ import annotations

import pytest

from cio_relay.errors import ConfigError
from tests.sync.sources.conftest import START, People, expected, read_all, rows_of


def test_rows_come_in_key_order_in_batches_of_batch_size(people: People) -> None:
    source = people.open(updated_at_column="updated_at")

    batches = read_all(source, batch_size=10)

    assert [len(batch) for batch in batches] == [10, 10, 5]
    assert [row for batch in batches for row in batch] == [expected(n) for n in range(1, 26)]


def test_a_row_without_an_id_is_skipped(people: People) -> None:
    rows = rows_of(people.open())

    assert "nobody@example.com" not in [row.attributes["email"] for row in rows]
    assert len(rows) == 25


def test_after_resumes_past_the_last_key(people: People) -> None:
    source = people.open(updated_at_column="updated_at")

    resumed = rows_of(source, after=17)

    assert resumed == [expected(n) for n in range(18, 26)]


def test_since_keeps_rows_updated_after_it_only(people: People) -> None:
    source = people.open(updated_at_column="updated_at")
    since = START.timestamp() + 20 * 3600  # person 20's updated_at: not after itself

    assert rows_of(source, since=since) == [expected(n) for n in range(21, 26)]
    assert rows_of(source, after=22, since=since) == [expected(n) for n in range(23, 26)]


def test_without_updated_at_column_it_is_an_attribute(people: People) -> None:
    first = rows_of(people.open(), batch_size=1)[0]

    assert first.updated_at is None
    # SQLite keeps the text it was given; the others have a time type, sent as Unix seconds.
    in_seconds = int(START.timestamp()) + 3600
    expected_value = "2026-01-01 01:00:00" if people.kind == "sqlite" else in_seconds
    assert first.attributes["updated_at"] == expected_value


def test_newest_updated_at_is_the_latest_rows(people: People) -> None:
    assert (
        people.open(updated_at_column="updated_at").newest_updated_at()
        == START.timestamp() + 25 * 3600
    )
    assert people.open().newest_updated_at() is None


def test_an_unknown_id_column_is_refused_naming_it(people: People) -> None:
    with pytest.raises(ConfigError, match=r"id_column: 'user_id' is not a column.*email"):
        people.open(id_column="user_id")


def test_an_unknown_updated_at_column_is_refused_naming_it(people: People) -> None:
    with pytest.raises(ConfigError, match=r"updated_at_column: 'changed' is not a column"):
        people.open(updated_at_column="changed")


def test_since_without_an_updated_at_column_is_refused(people: People) -> None:
    with pytest.raises(ConfigError, match=r"updated_at_column: since= filters on it"):
        rows_of(people.open(), since=0.0)


def test_a_run_stopped_early_leaves_the_source_readable(people: People) -> None:
    source = people.open()
    batches = source.batches(after=None, since=None, batch_size=5)
    next(batches)
    batches.close()  # what a run that stops after one batch does

    assert len(rows_of(source)) == 25
