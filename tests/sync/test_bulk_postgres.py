"""Bulk sync from a real PostgreSQL to the emulator over real HTTP (issue 14, "Build" 3 and 5).

Every test reads a table of the ``postgres_server`` fixture (initdb + pg_ctl, no fake) through
``PostgresSource`` and delivers with the relay's own worker (``worker().drain()``) to the
session's emulator on a 127.0.0.1 socket, then reads the people back from ``/_emulator/people``:

- random sequences of inserts, updates (a value changed, a value set to NULL), deletes and
  syncs (some failing partway and resumed by the next) end, after each fresh sync, with the
  emulator holding exactly the table (hypothesis), removed people cleared or erased;
- a run SIGKILLed partway (between two batches, inside a batch's transaction, or while it
  erases removed people) resumes from its checkpoint with the same run id, and every person
  is in the outbox exactly once;
- the incremental watermark's overlap catches a row that committed late with an older
  ``updated_at``; without an overlap it is missed; it survives runs that read nothing, and a
  resumed incremental run misses no row;
- a bulk-synced person's preferences follow a signed subscription webhook;
- a person deleted from the table is suppressed, then deleted, at the emulator; nobody still in
  the table is ever removed (two runs at once, a row turned invalid, an email's case);
- a table keyed by email syncs people identified by email; a value Python cannot hold
  (``'infinity'``) is one invalid row.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from starlette.routing import Route

from cio_relay.emulator import EmulatorServer
from cio_relay.operations import Kind, Operation
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.relay import Relay
from cio_relay.serving import BackgroundServer, bind_socket
from cio_relay.sync import PREFERENCE_PATTERNS, UserRepository, preference_handler
from cio_relay.sync.bulk import BulkSync
from cio_relay.sync.runs import SyncRun
from cio_relay.sync.sources import Source, SourceRow, open_source
from cio_relay.sync.spec import SyncSpec
from cio_relay.webhooks.pipeline import WebhookPipeline
from cio_relay.webhooks.receiver import WebhookReceiver
from cio_relay.webhooks.router import Router
from cio_relay.webhooks.sqlite_inbox import SQLiteInbox
from tests.fixtures.delivery import emulator_settings
from tests.fixtures.postgres_server import PostgresServer
from tests.sync.conftest import take_all
from tests.sync.test_preferences import preferences_changed_body
from tests.webhooks.helpers import KEY, OLD_KEY, payload, signed

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

    def newest_updated_at(self) -> float | None:
        return self.source.newest_updated_at()

    def close(self) -> None:
        self.source.close()


class ConnectionLost(Exception):
    pass


class FailingSource(RecordingSource):
    """A real source that fails after ``batches`` batches, as a dropped connection would."""

    def __init__(self, source: Source, batches: int) -> None:
        super().__init__(source)
        self.left = batches

    def batches(
        self, *, after: Any | None, since: float | None, batch_size: int
    ) -> Iterator[list[SourceRow]]:
        for batch in super().batches(after=after, since=since, batch_size=batch_size):
            if self.left == 0:
                raise ConnectionLost("server closed the connection unexpectedly")
            self.left -= 1
            yield batch


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
    # A sync, or one whose source fails after that many batches (resumed by the next sync).
    st.tuples(st.just("sync"), st.none() | st.integers(0, 1)),
)
BATCH = 3


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
    spec = users_spec(module_database, removed=removed, batch_size=BATCH)
    table: dict[int, dict[str, Any]] = {}
    synced: set[int] = set()  # everyone a sync recorded so far
    resuming, checkpoint = False, None  # a failed run to resume, and its last committed key
    with (
        tempfile.TemporaryDirectory() as directory,
        relay_to(emulator, Path(directory) / "outbox.db") as relay,
        psycopg.connect(module_database, autocommit=True) as conn,
    ):
        conn.execute("TRUNCATE users")
        users = UserRepository(relay)
        # The last two syncs: one may resume a failed run, the other then starts afresh.
        for step in [*steps, ("sync", None), ("sync", None)]:
            if step[0] != "sync":
                write_step(conn, step, table)
                continue
            after = sorted(p for p in table if checkpoint is None or p > checkpoint)
            fail_after = step[1]
            source = None if fail_after is None else FailingSource(open_source(spec), fail_after)
            try:
                run = BulkSync(users, spec, source).run()
            except ConnectionLost:  # the batches before the failure are recorded
                recorded = after[: fail_after * BATCH]
                synced |= set(recorded)
                checkpoint = recorded[-1] if recorded else checkpoint
                resuming = True
                drained(relay)
                continue
            drained(relay)
            synced |= set(after)
            if resuming:  # rows changed behind the checkpoint wait for the next run
                resuming, checkpoint = False, None
                continue
            assert (run.status, run.rows_read, run.invalid) == ("completed", len(table), 0)
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


def test_an_erasure_pass_killed_with_sigkill_resumes_erasing_each_removed_person_once(
    postgres_url: str, tmp_path: Path
) -> None:
    fill_users(postgres_url, 2_000)
    outbox_path = tmp_path / "outbox.db"
    spec = users_spec(postgres_url, batch_size=BACKFILL_BATCH, removed="delete")
    outbox = SqliteOutbox(outbox_path)
    BulkSync(UserRepository(outbox), spec).run()
    take_all(outbox)
    outbox.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DELETE FROM users WHERE id BETWEEN 501 AND 1500")
    argv = [sys.executable, str(CHILD), postgres_url, str(outbox_path), str(BACKFILL_BATCH)]
    killed = subprocess.run(
        [*argv, "4", "removing"], capture_output=True, text=True, timeout=60, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    outbox = SqliteOutbox(outbox_path)
    try:
        users = UserRepository(outbox)
        interrupted = users.store.runs("default")[0]
        assert (interrupted.status, interrupted.rows_read, interrupted.removed) == (
            "running",
            1_000,
            400,
        )
        source = RecordingSource(open_source(spec))
        resumed = BulkSync(users, spec, source).run()
        assert source.reads == [(2_000, None)]  # the table was read to its end before the kill
        assert (resumed.run_id, resumed.status) == (interrupted.run_id, "completed")
        assert (resumed.removed, resumed.operations) == (1_000, 2_000)
        ops = take_all(outbox)
        assert users.get("501") is None and users.get("1500") is None
        assert users.get("500") is not None
    finally:
        outbox.close()
    kinds: dict[int, list[Kind]] = {}
    for op in ops:
        kinds.setdefault(int(op.identifiers["id"]), []).append(op.kind)
    assert sorted(kinds) == list(range(501, 1501))  # every removed person, nobody else
    assert all(sent == [Kind.SUPPRESS, Kind.DELETE] for sent in kinds.values())  # each once


class GatedSource(RecordingSource):
    """A real source whose read waits for ``gate``; ``arrived`` is set once the run reached it
    (and so chose its run id)."""

    def __init__(self, source: Source) -> None:
        super().__init__(source)
        self.arrived, self.gate = threading.Event(), threading.Event()

    def batches(
        self, *, after: Any | None, since: float | None, batch_size: int
    ) -> Iterator[list[SourceRow]]:
        self.arrived.set()
        assert self.gate.wait(60), "the gate was never opened"
        yield from super().batches(after=after, since=since, batch_size=batch_size)


def test_two_runs_of_one_sync_at_once_never_erase_people_still_in_the_table(
    postgres_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """Say ``cio-relay sync run`` by hand while the scheduler of ``cio-relay run`` runs the
    same sync: two processes on one outbox file, each run with its own run id."""
    fill_users(postgres_url, 30)
    spec = users_spec(postgres_url, removed="delete", batch_size=10)
    outbox_path = tmp_path / "outbox.db"
    with relay_to(emulator, outbox_path) as relay, relay_to(emulator, outbox_path) as other:
        # The other run starts first and waits on its first read; this one reads the table.
        slow = GatedSource(open_source(spec))
        other_run = threading.Thread(target=BulkSync(UserRepository(other), spec, slow).run)
        other_run.start()
        assert slow.arrived.wait(60)
        ran_other: list[bool] = []

        def on_progress(run: SyncRun) -> None:
            if run.rows_read == 30 and not ran_other:  # read to the end, not yet removing
                ran_other.append(True)
                slow.gate.set()
                other_run.join(60)

        BulkSync(UserRepository(relay), spec).run(on_progress=on_progress)
        assert ran_other and not other_run.is_alive()
        drained(relay)
        assert set(people_at(emulator)) == {str(person) for person in range(1, 31)}


# --- 3. the watermark's overlap catches a row that committed late ------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_overlap_catches_a_row_that_committed_late_with_an_older_updated_at(
    postgres_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE users (id integer PRIMARY KEY, name text, updated_at timestamptz)"
        )
        for person, seconds in ((1, 10), (2, 20), (3, 30)):
            conn.execute(
                "INSERT INTO users VALUES (%s, %s, %s)", [person, f"p{person}", at(seconds)]
            )
    overlaps = {"wide": 10.0, "zero": 0.0}  # the late row is 5 s older than the newest read
    specs = {
        name: users_spec(
            postgres_url,
            name=name,
            mode="incremental",
            updated_at_column="updated_at",
            overlap=overlap,
        )
        for name, overlap in overlaps.items()
    }
    with (
        relay_to(emulator, tmp_path / "wide.db") as wide,
        relay_to(emulator, tmp_path / "zero.db") as zero,
        psycopg.connect(postgres_url) as late,
    ):
        relays = {"wide": wide, "zero": zero}
        # A transaction stamps its row at T0+25 s and is still open while both syncs read.
        late.execute("INSERT INTO users VALUES (9, 'late', %s)", [at(25)])
        for name, relay in relays.items():
            first = BulkSync(UserRepository(relay), specs[name]).run()
            assert (first.rows_read, first.watermark) == (3, at(30).timestamp())
        late.commit()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("INSERT INTO users VALUES (4, 'p4', %s)", [at(40)])
        second = {
            name: BulkSync(UserRepository(relay), specs[name]).run()
            for name, relay in relays.items()
        }
        assert (second["wide"].since, second["zero"].since) == (
            at(20).timestamp(),
            at(30).timestamp(),
        )
        assert (second["wide"].added, second["wide"].unchanged) == (2, 1)  # 9 and 4; 3 again
        assert (second["zero"].added, second["zero"].unchanged) == (1, 0)  # 4 only
        for relay in (wide, zero):
            reset(emulator)
            drained(relay)
            held = people_at(emulator)
            if relay is wide:
                assert held == {str(p): {"name": f"p{p}"} for p in (1, 2, 3, 4)} | {
                    "9": {"name": "late"}
                }
            else:
                assert held == {str(p): {"name": f"p{p}"} for p in (1, 2, 3, 4)}  # 9 missed


def test_the_watermark_survives_many_incremental_runs_that_read_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE users (id integer PRIMARY KEY, name text, updated_at timestamptz)"
        )
        for person, seconds in ((1, 10), (2, 20), (3, 30)):
            conn.execute(
                "INSERT INTO users VALUES (%s, %s, %s)", [person, f"p{person}", at(seconds)]
            )
    spec = users_spec(postgres_url, mode="incremental", updated_at_column="updated_at", overlap=0.0)
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    try:
        users = UserRepository(outbox)
        assert BulkSync(users, spec).run().watermark == at(30).timestamp()
        # A quiet hour of a sync scheduled every minute: nothing changes, nothing is read.
        for _minute in range(60):
            quiet = BulkSync(users, spec).run()
            assert (quiet.since, quiet.rows_read) == (at(30).timestamp(), 0)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("INSERT INTO users VALUES (4, 'p4', %s)", [at(40)])
        source = RecordingSource(open_source(spec))
        after_quiet = BulkSync(users, spec, source).run()
        assert source.reads == [(None, at(30).timestamp())]  # not the whole table again
        assert (after_quiet.rows_read, after_quiet.added) == (1, 1)
    finally:
        outbox.close()


def test_a_resumed_incremental_run_does_not_skip_rows_updated_before_its_checkpoint(
    postgres_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE users (id integer PRIMARY KEY, name text, updated_at timestamptz)"
        )
        for person in range(1, 7):
            conn.execute(
                "INSERT INTO users VALUES (%s, %s, %s)", [person, f"p{person}", at(person)]
            )
    spec = users_spec(
        postgres_url, mode="incremental", updated_at_column="updated_at", overlap=10.0, batch_size=2
    )
    with relay_to(emulator, tmp_path / "outbox.db") as relay:
        users = UserRepository(relay)
        BulkSync(users, spec).run()
        # Every row changes; the next run fails after its first batch (people 1 and 2).
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE users SET name = name || '+', updated_at = updated_at + '100 s'")
        with pytest.raises(ConnectionLost):
            BulkSync(users, spec, FailingSource(open_source(spec), 1)).run()
        assert users.store.runs(spec.name)[0].last_key == 2
        # Before it is resumed (a restart minutes later), person 1, behind the checkpoint,
        # changes; then person 5, ahead of it, further apart in time than the overlap.
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE users SET name = 'p1 again', updated_at = %s WHERE id = 1", [at(200)]
            )
            conn.execute(
                "UPDATE users SET name = 'p5 again', updated_at = %s WHERE id = 5", [at(900)]
            )
        BulkSync(users, spec).run()  # the resumed run reads people 3 to 6
        BulkSync(users, spec).run()  # the next run, from its watermark less the overlap
        drained(relay)
    with psycopg.connect(postgres_url) as conn:
        table: dict[str, str] = dict(conn.execute("SELECT id::text, name FROM users").fetchall())
    assert people_at(emulator) == {person: {"name": name} for person, name in table.items()}


# --- 4. preferences: a signed subscription webhook for a bulk-synced person ---------------------


@contextmanager
def webhook_receiver(inbox: SQLiteInbox) -> Iterator[str]:
    """The real ``WebhookReceiver`` on a 127.0.0.1 socket; yields its URL."""
    receiver = WebhookReceiver(inbox, [KEY])
    app = Starlette(routes=[Route("/webhooks/customerio", receiver, methods=["POST"])])
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    with BackgroundServer(config, bind_socket("127.0.0.1", 0)) as server:
        yield f"{server.url}/webhooks/customerio"


def insert_people(url: str, *people: tuple[int, str, int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(USERS_TABLE)
        for person, name, age in people:
            conn.execute(
                "INSERT INTO users (id, name, age) VALUES (%s, %s, %s)", [person, name, age]
            )


def test_a_signed_subscription_webhook_updates_a_bulk_synced_persons_preferences(
    postgres_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    insert_people(postgres_url, (42, "Ada", 36), (43, "Grace", 45))
    spec = users_spec(postgres_url)
    with relay_to(emulator, tmp_path / "outbox.db") as relay:
        users = UserRepository(relay)
        BulkSync(users, spec).run()
        drained(relay)
        router = Router()
        for pattern in PREFERENCE_PATTERNS:
            router.on(pattern)(preference_handler(users))
        now = int(time.time())
        bodies = [
            payload(
                "email", "unsubscribed", timestamp=now, customer_id="42", identifiers={"id": "42"}
            ),
            preferences_changed_body("42", now, {"topic_4": False, "topic_7": True}),
        ]
        forged = payload(
            "sms", "unsubscribed", timestamp=now, customer_id="43", identifiers={"id": "43"}
        )
        with SQLiteInbox(tmp_path / "webhooks.db") as inbox:
            with webhook_receiver(inbox) as url, httpx.Client(timeout=30) as client:
                for body in bodies:
                    answer = client.post(url, content=body, headers=signed(body, timestamp=now))
                    assert answer.status_code == 200, answer.text
                refused = client.post(
                    url, content=forged, headers=signed(forged, timestamp=now, key=OLD_KEY)
                )
                assert refused.status_code == 401
            report = WebhookPipeline(inbox, router).drain()
        assert report.handlers.done == 2

        ada, grace = users.get("42"), users.get("43")
        assert ada is not None and grace is not None
        assert (ada.unsubscribed, ada.topics) == (True, {"topic_4": False, "topic_7": True})
        assert ada.attributes == {"name": "Ada", "age": 36}
        assert (grace.unsubscribed, grace.topics) == (None, {})  # the forged one was refused
        # Nothing echoed back, and the next sync still finds the table's people unchanged.
        assert relay.outbox.depth().pending == 0
        again = BulkSync(users, spec).run()
        assert (again.unchanged, again.operations) == (2, 0)
        # A later change in the table sends only that, and keeps the preferences.
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE users SET age = 37 WHERE id = 42")
        changed = BulkSync(users, spec).run()
        assert (changed.changed, changed.operations) == (1, 1)
        drained(relay)
        assert people_at(emulator) == {
            "42": {"name": "Ada", "age": 37},
            "43": {"name": "Grace", "age": 45},
        }
        after = users.get("42")
        assert after is not None and (after.unsubscribed, after.topics) == (True, ada.topics)


# --- 5. erasure end to end ----------------------------------------------------------------------


def test_a_person_deleted_from_the_table_is_suppressed_then_deleted_at_the_emulator(
    postgres_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    insert_people(postgres_url, (1, "Ada", 36), (2, "Grace", 45), (3, "Linus", 28))
    spec = users_spec(postgres_url, removed="delete")
    with relay_to(emulator, tmp_path / "outbox.db") as relay:
        users = UserRepository(relay)
        BulkSync(users, spec).run()
        drained(relay)
        assert set(people_at(emulator)) == {"1", "2", "3"}

        # What the emulator holds of the person as each operation is accepted (hooks fire on
        # the worker's loop after the ack, before the person's next operation can be sent).
        seen: list[tuple[Kind, str, dict[str, Any] | None]] = []

        def record(op: Operation, _latency: float) -> None:
            person = op.identifiers["id"]
            seen.append((op.kind, person, person_at(emulator, person)))

        relay.hooks.on_delivered(record)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("DELETE FROM users WHERE id = 2")
        run = BulkSync(users, spec).run()
        assert (run.removed, run.unchanged, run.operations) == (1, 2, 2)
        drained(relay)

        assert [(kind, person) for kind, person, _ in seen] == [
            (Kind.SUPPRESS, "2"),
            (Kind.DELETE, "2"),
        ]
        suppressed = seen[0][2]
        assert suppressed is not None and suppressed["suppressed"] is True
        assert seen[1][2] is None
        assert people_at(emulator) == {
            "1": {"name": "Ada", "age": 36},
            "3": {"name": "Linus", "age": 28},
        }
        assert users.get("2") is None  # erasure keeps no copy
        later = BulkSync(users, spec).run()
        assert (later.removed, later.operations) == (0, 0)


# --- 6. a table keyed by email ------------------------------------------------------------------


def test_a_table_keyed_by_email_syncs_people_identified_by_email(
    postgres_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE contacts (email text PRIMARY KEY, name text, plan text)")
        conn.execute(
            "INSERT INTO contacts VALUES ('ada@example.com', 'Ada', 'pro'),"
            " ('grace@example.com', 'Grace', 'free'), ('linus@example.com', 'Linus', NULL)"
        )
    spec = SyncSpec(
        source=postgres_url,
        table="contacts",
        id_column="email",
        id_type="email",
        removed="delete",
        batch_size=2,
    )
    with relay_to(emulator, tmp_path / "outbox.db") as relay:
        users = UserRepository(relay)
        first = BulkSync(users, spec).run()
        assert (first.added, first.last_key) == (3, "linus@example.com")
        drained(relay)
        ada = person_at(emulator, "ada@example.com")
        assert ada is not None and (ada["id"], ada["email"]) == (None, "ada@example.com")
        assert people_at(emulator) == {
            "ada@example.com": {"name": "Ada", "plan": "pro"},
            "grace@example.com": {"name": "Grace", "plan": "free"},
            "linus@example.com": {"name": "Linus"},
        }
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE contacts SET plan = NULL WHERE email = 'grace@example.com'")
            conn.execute("DELETE FROM contacts WHERE email = 'linus@example.com'")
        second = BulkSync(users, spec).run()
        assert (second.changed, second.unchanged, second.removed) == (1, 1, 1)
        drained(relay)
        assert people_at(emulator) == {
            "ada@example.com": {"name": "Ada", "plan": "pro"},
            "grace@example.com": {"name": "Grace"},
        }
        grace = users.get({"email": "grace@example.com"})
        assert grace is not None and grace.attributes == {"name": "Grace"}
        assert users.get({"email": "linus@example.com"}) is None


# --- values PostgreSQL holds and Python's datetime cannot -------------------------------------


def test_an_infinite_timestamp_is_one_invalid_row_not_a_stopped_run(
    postgres_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    # 'infinity' is a common "never expires"; psycopg's default loaders refuse it (DataError).
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE users (id integer PRIMARY KEY, name text, valid_until timestamptz,"
            " born date)"
        )
        conn.execute(
            "INSERT INTO users VALUES (1, 'Ada', '2030-01-01 00:00Z', '1815-12-10'),"
            " (2, 'Grace', 'infinity', NULL), (3, 'Linus', NULL, '-infinity'),"
            " (4, 'Ken', NULL, NULL)"
        )
    with relay_to(emulator, tmp_path / "outbox.db") as relay:
        users = UserRepository(relay)
        run = BulkSync(users, users_spec(postgres_url)).run()
        assert (run.status, run.rows_read, run.added, run.invalid) == ("completed", 4, 2, 2)
        assert {(e.person, e.field) for e in run.errors} == {
            ("2", "attributes.valid_until"),
            ("3", "attributes.born"),
        }
        drained(relay)
    assert people_at(emulator) == {
        "1": {"name": "Ada", "valid_until": 1_893_456_000, "born": "1815-12-10"},
        "4": {"name": "Ken"},
    }


@pytest.mark.parametrize("removed", ["clear", "delete"])
def test_an_email_whose_case_changes_in_the_table_stays_the_same_person(
    postgres_url: str, emulator: EmulatorServer, tmp_path: Path, removed: str
) -> None:
    # Customer.io compares emails without case (customerio-api.md §2): the old spelling
    # leaving the table is not a person leaving it.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE contacts (email text PRIMARY KEY, name text, plan text)")
        conn.execute("INSERT INTO contacts VALUES ('Ada@Example.com', 'Ada', 'pro')")
    spec = SyncSpec(
        source=postgres_url,
        table="contacts",
        id_column="email",
        id_type="email",
        removed=removed,
    )
    with relay_to(emulator, tmp_path / "outbox.db") as relay:
        users = UserRepository(relay)
        BulkSync(users, spec).run()
        drained(relay)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE contacts SET email = lower(email)")  # the app normalizes
        BulkSync(users, spec).run()
        drained(relay)
    held = {email.lower(): attributes for email, attributes in people_at(emulator).items()}
    assert held == {"ada@example.com": {"name": "Ada", "plan": "pro"}}


@pytest.mark.parametrize(
    ("column", "bad_value"),
    [("score", "NaN"), ("name", "x" * 2_000)],  # a value JSON cannot carry; one over a limit
)
def test_a_synced_persons_row_turned_invalid_is_reported_not_removed(
    postgres_url: str, emulator: EmulatorServer, tmp_path: Path, column: str, bad_value: str
) -> None:
    insert_people(postgres_url, (1, "Ada", 36), (2, "Grace", 45))
    spec = users_spec(postgres_url, removed="delete")
    with relay_to(emulator, tmp_path / "outbox.db") as relay:
        users = UserRepository(relay)
        BulkSync(users, spec).run()
        drained(relay)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("UPDATE users SET {} = %s WHERE id = 2").format(sql.Identifier(column)),
                [bad_value],
            )
        run = BulkSync(users, spec).run()
        assert (run.invalid, run.removed) == (1, 0)
        assert run.errors[0].person == "2" and run.errors[0].field == f"attributes.{column}"
        drained(relay)
        assert users.get("2") is not None
    # Still in the table: Customer.io keeps the last good attributes until the row is fixed.
    assert people_at(emulator) == {
        "1": {"name": "Ada", "age": 36},
        "2": {"name": "Grace", "age": 45},
    }


def test_two_rows_whose_emails_differ_only_in_case_are_one_person_reported_twice(
    postgres_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    # Distinct keys to PostgreSQL, one person to Customer.io; not adjacent in key order (the
    # fixture's collation is C: capitals first), nor in one batch.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE contacts (email text PRIMARY KEY, plan text)")
        conn.execute(
            "INSERT INTO contacts VALUES ('Ada@Example.com', 'pro'), ('Bob@example.com', 'free'),"
            " ('ada@example.com', 'team')"
        )
    spec = SyncSpec(
        source=postgres_url, table="contacts", id_column="email", id_type="email", batch_size=2
    )
    with relay_to(emulator, tmp_path / "outbox.db") as relay:
        users = UserRepository(relay)
        first = BulkSync(users, spec).run()
        assert (first.added, first.invalid) == (2, 1)
        assert first.errors[0].field == "email" and "twice" in first.errors[0].message
        drained(relay)
        # Synced again unchanged, the table sends nothing: no flip-flop between the two rows.
        again = BulkSync(users, spec).run()
        assert (again.operations, again.invalid) == (0, 1)
    held = {email.lower(): attributes for email, attributes in people_at(emulator).items()}
    assert set(held) == {"ada@example.com", "bob@example.com"}


def test_an_id_twice_across_a_batch_boundary_is_reported(
    postgres_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    # A query (or a table without a key) may yield an id twice; here the two rows fall in two
    # batches.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE signups (id integer, plan text)")
        conn.execute("INSERT INTO signups VALUES (1, 'free'), (2, 'pro'), (2, 'team')")
    spec = SyncSpec(source=postgres_url, query="SELECT id, plan FROM signups", batch_size=2)
    with relay_to(emulator, tmp_path / "outbox.db") as relay:
        users = UserRepository(relay)
        first = BulkSync(users, spec).run()
        assert (first.rows_read, first.added, first.invalid) == (3, 2, 1)
        assert first.errors[0].person == "2" and "twice" in first.errors[0].message
        drained(relay)
        again = BulkSync(users, spec).run()
        assert (again.operations, again.invalid) == (0, 1)
    assert set(people_at(emulator)) == {"1", "2"}
