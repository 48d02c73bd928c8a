"""Bulk sync from a real PostgreSQL to the emulator over real HTTP (issue 14, "Build" 3 and 5).

Every test reads a table of the ``postgres_server`` fixture (initdb + pg_ctl, no fake) through
``PostgresSource`` and delivers with the relay's own worker (``worker().drain()``) to the
session's emulator on a 127.0.0.1 socket, then reads the people back from ``/_emulator/people``:

- random sequences of inserts, updates (a value changed, a value set to NULL), deletes and
  syncs end, after each sync, with the emulator holding exactly the table (hypothesis);
- a run SIGKILLed partway (between two batches, or inside a batch's transaction) resumes from
  its checkpoint with the same run id, and every person is in the outbox exactly once;
- the incremental watermark's overlap catches a row that committed late with an older
  ``updated_at``; without an overlap it is missed;
- a bulk-synced person's preferences follow a signed subscription webhook;
- a person deleted from the table is suppressed, then deleted, at the emulator;
- a table keyed by email syncs people identified by email.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from cio_relay.emulator import EmulatorServer
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.relay import Relay
from cio_relay.sync import UserRepository
from cio_relay.sync.bulk import BulkSync
from cio_relay.sync.sources import Source, SourceRow, open_source
from cio_relay.sync.spec import SyncSpec
from tests.fixtures.delivery import emulator_settings
from tests.fixtures.postgres_server import PostgresServer
from tests.sync.conftest import take_all

# --- shared helpers ---------------------------------------------------------------------------

#: The typed attribute columns of the ``users`` table (id is the key).
USERS_TABLE = (
    "CREATE TABLE users (id integer PRIMARY KEY, name text, age integer, active boolean,"
    " seen_at timestamptz, prefs jsonb, score numeric)"
)
COLUMNS = ("name", "age", "active", "seen_at", "prefs", "score")


def people_at(emulator: EmulatorServer) -> dict[str, dict[str, Any]]:
    """Every person at the emulator by id (or, without one, by email): their attributes."""
    with httpx.Client(base_url=f"{emulator.url}/_emulator", timeout=30) as client:
        rows = client.get("people", params={"limit": 10_000}).json()["people"]
    return {row["id"] or row["email"]: without_ids(row["attributes"]) for row in rows}


def person_at(emulator: EmulatorServer, identifier: str) -> dict[str, Any] | None:
    response = httpx.get(f"{emulator.url}/_emulator/people/{identifier}", timeout=30)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    person: dict[str, Any] = response.json()
    return person


def without_ids(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k not in ("id", "email")}


def reset(emulator: EmulatorServer) -> None:
    httpx.post(f"{emulator.url}/_emulator/reset", timeout=10).raise_for_status()


@contextmanager
def relay_to(emulator: EmulatorServer, outbox_path: Path) -> Iterator[Relay]:
    """A relay on a SQLite outbox file delivering to ``emulator``."""
    outbox = SqliteOutbox(outbox_path)
    try:
        yield Relay(emulator_settings(emulator, f"sqlite:///{outbox_path}"), outbox=outbox)
    finally:
        outbox.close()


def drained(relay: Relay) -> None:
    """Deliver everything, and check that nothing was left behind or dead-lettered."""
    stats = relay.worker().drain()
    assert not stats.dead, stats
    assert relay.outbox.depth().pending == 0, stats


def users_spec(url: str, **fields: Any) -> SyncSpec:
    return SyncSpec(**{"source": url, "table": "users", "batch_size": 3, **fields})


class RecordingSource:
    """A real source whose reads are recorded: the ``after`` and ``since`` of each."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.description = source.description
        self.reads: list[tuple[Any, float | None]] = []

    def batches(
        self, *, after: Any | None, since: float | None, batch_size: int
    ) -> Iterator[list[SourceRow]]:
        self.reads.append((after, since))
        return self.source.batches(after=after, since=since, batch_size=batch_size)

    def close(self) -> None:
        self.source.close()


@pytest.fixture(scope="module")
def shared_emulator(_emulator_session: EmulatorServer) -> EmulatorServer:
    """The session's emulator, reset by each hypothesis example itself."""
    return _emulator_session


@pytest.fixture(scope="module")
def module_database(postgres_server: PostgresServer) -> Iterator[str]:
    """One database for the module's hypothesis test: its examples truncate the table (a
    function-scoped fixture would be shared by every example anyway)."""
    name = f"bulk_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(USERS_TABLE)
    yield url
    postgres_server.drop_database(name)


# --- 1. diff correctness under hypothesis ------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": TEXT,
    "age": st.integers(-(2**31), 2**31 - 1),
    "active": st.booleans(),
    "seen_at": st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    "prefs": JSON,
    "score": st.decimals(-(10**6), 10**6, places=2, allow_nan=False, allow_infinity=False),
}
ROW = st.fixed_dictionaries({column: st.none() | VALUES[column] for column in COLUMNS})
IDS = st.integers(1, 6)
STEP = st.one_of(
    st.tuples(st.just("upsert"), IDS, ROW),
    st.sampled_from(COLUMNS).flatmap(
        lambda column: st.tuples(st.just("set"), IDS, st.just(column), st.none() | VALUES[column])
    ),
    st.tuples(st.just("delete"), IDS),
    st.just(("sync",)),
)


def sent_as(column: str, value: Any) -> Any:
    """The value a column's cell is expected to have at Customer.io: a time in whole Unix
    seconds, a numeric as an int when whole, otherwise as JSON reads it."""
    if column == "seen_at":
        return math.floor(value.timestamp())
    if column == "score":
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def expected_attributes(row: dict[str, Any]) -> dict[str, Any]:
    """NULL and "" are no attribute at all (Customer.io removes an attribute set to "")."""
    return {c: sent_as(c, v) for c, v in row.items() if v is not None and v != ""}


def cell(column: str, value: Any) -> Any:
    return Jsonb(value) if column == "prefs" and value is not None else value


def write_step(conn: psycopg.Connection[Any], step: tuple[Any, ...], table: dict[int, Any]) -> None:
    """Apply one step to PostgreSQL and to ``table``, the model of what it holds."""
    if step[0] == "upsert":
        _, person, row = step
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in COLUMNS
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO users VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET {}"
            ).format(updates),
            [person, *(cell(c, row[c]) for c in COLUMNS)],
        )
        table[person] = dict(row)
    elif step[0] == "set":
        _, person, column, value = step
        conn.execute(
            sql.SQL("UPDATE users SET {} = %s WHERE id = %s").format(sql.Identifier(column)),
            [cell(column, value), person],
        )
        if person in table:
            table[person][column] = value
    else:
        conn.execute("DELETE FROM users WHERE id = %s", [step[1]])
        table.pop(step[1], None)


@settings(max_examples=15, deadline=None)
@given(steps=st.lists(STEP, max_size=14), removed=st.sampled_from(["clear", "delete"]))
def test_after_every_sync_the_emulator_holds_exactly_the_table(
    module_database: str,
    shared_emulator: EmulatorServer,
    steps: list[tuple[Any, ...]],
    removed: str,
) -> None:
    emulator = shared_emulator
    reset(emulator)
    spec = users_spec(module_database, removed=removed)
    table: dict[int, dict[str, Any]] = {}
    synced: set[int] = set()  # everyone read by a sync so far
    with (
        tempfile.TemporaryDirectory() as directory,
        relay_to(emulator, Path(directory) / "outbox.db") as relay,
        psycopg.connect(module_database, autocommit=True) as conn,
    ):
        conn.execute("TRUNCATE users")
        users = UserRepository(relay)
        for step in [*steps, ("sync",)]:
            if step[0] != "sync":
                write_step(conn, step, table)
                continue
            run = BulkSync(users, spec).run()
            assert (run.status, run.rows_read, run.invalid) == ("completed", len(table), 0)
            drained(relay)
            synced |= set(table)
            expected = {str(person): expected_attributes(row) for person, row in table.items()}
            if removed == "clear":  # still there, with every attribute cleared
                expected.update({str(person): {} for person in synced - set(table)})
            assert people_at(emulator) == expected


# --- 2. SIGKILL mid-backfill, then resume ------------------------------------------------------

CHILD = Path(__file__).with_name("bulk_sigkill_child.py")
BACKFILL_ROWS, BACKFILL_BATCH, KILLED_AFTER = 5_000, 100, 17


def fill_users(url: str, count: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(USERS_TABLE)
        conn.execute(
            "INSERT INTO users (id, name, age, active)"
            " SELECT n, 'user ' || n, n %% 90, n %% 2 = 0 FROM generate_series(1, %s) AS n",
            [count],
        )


@pytest.mark.parametrize("where", ["between", "inside"])
def test_a_backfill_killed_with_sigkill_resumes_at_its_checkpoint_sending_each_person_once(
    postgres_url: str, tmp_path: Path, where: str
) -> None:
    fill_users(postgres_url, BACKFILL_ROWS)
    outbox_path = tmp_path / "outbox.db"
    argv = [sys.executable, str(CHILD), postgres_url, str(outbox_path)]
    killed = subprocess.run(
        [*argv, str(BACKFILL_BATCH), str(KILLED_AFTER), where],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    outbox = SqliteOutbox(outbox_path)
    try:
        users = UserRepository(outbox)
        (interrupted,) = users.store.runs("default")
        checkpoint = KILLED_AFTER * BACKFILL_BATCH  # keys 1..N: the Nth batch ends at N*100
        assert (interrupted.status, interrupted.last_key) == ("running", checkpoint)
        assert (interrupted.rows_read, interrupted.added) == (checkpoint, checkpoint)

        spec = users_spec(postgres_url, batch_size=BACKFILL_BATCH)
        source = RecordingSource(open_source(spec))
        resumed = BulkSync(users, spec, source).run()
        assert source.reads == [(checkpoint, None)]
        assert (resumed.run_id, resumed.status) == (interrupted.run_id, "completed")
        assert (resumed.rows_read, resumed.added, resumed.operations) == (BACKFILL_ROWS,) * 3

        ops = take_all(outbox)
    finally:
        outbox.close()
    sent = Counter(int(op.identifiers["id"]) for op in ops)
    assert sorted(sent) == list(range(1, BACKFILL_ROWS + 1))  # none missed
    assert set(sent.values()) == {1}  # none twice
    by_id = {int(op.identifiers["id"]): op.payload["attributes"] for op in ops}
    assert by_id[checkpoint] == {
        "name": f"user {checkpoint}",
        "age": checkpoint % 90,
        "active": True,
    }
    assert by_id[checkpoint + 1]["name"] == f"user {checkpoint + 1}"
