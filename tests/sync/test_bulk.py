"""``BulkSync``: rows of a source diffed into the outbox, with checkpoints, removals, errors.

Every test runs on both user stores (memory, SQLite) through the ``relay`` fixture, with the
in-memory source; the real databases and files are in tests/sync/sources and
tests/sync/test_bulk_postgres.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cio_relay.config import Settings
from cio_relay.errors import OutboxFullError
from cio_relay.operations import Kind, OperationFactory
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.relay import Relay
from cio_relay.sync import UserRepository
from cio_relay.sync.bulk import BulkSync
from cio_relay.sync.runs import next_run_id
from cio_relay.sync.sources.base import SourceRow, Unconvertible
from cio_relay.sync.sources.memory import MemorySource
from cio_relay.sync.spec import SyncSpec
from tests.sync.conftest import take_all


def rows(count: int, **extra: Any) -> list[SourceRow]:
    return [SourceRow(i, {"email": f"p{i}@example.com", "n": i, **extra}) for i in range(count)]


def spec(**fields: Any) -> SyncSpec:
    return SyncSpec(**{"source": "memory", "batch_size": 10, **fields})


def attributes_sent(relay: Relay) -> dict[str, dict[str, Any]]:
    sent: dict[str, dict[str, Any]] = {}
    for op in take_all(relay.outbox):
        assert op.kind is Kind.IDENTIFY
        sent.setdefault(op.identifiers["id"], {}).update(op.payload["attributes"])
    return sent


def test_first_run_sends_every_row_and_records_the_run(relay: Relay, users: UserRepository) -> None:
    run = BulkSync(users, spec(), MemorySource(rows(25))).run()
    assert (run.status, run.rows_read, run.added, run.changed, run.operations) == (
        "completed",
        25,
        25,
        0,
        25,
    )
    assert run.last_key == 24
    sent = attributes_sent(relay)
    assert sent["7"] == {"email": "p7@example.com", "n": 7}
    assert users.store.runs("default") == [run]


def test_an_unchanged_source_sends_nothing_and_a_change_only_its_keys(
    relay: Relay,
    users: UserRepository,
) -> None:
    source = rows(25)
    BulkSync(users, spec(), MemorySource(source)).run()
    take_all(relay.outbox)
    again = BulkSync(users, spec(), MemorySource(source)).run()
    assert (again.unchanged, again.operations) == (25, 0)
    source[3] = SourceRow(3, {"email": "p3@example.com", "n": 300})
    third = BulkSync(users, spec(), MemorySource(source)).run()
    assert (third.changed, third.unchanged, third.operations) == (1, 24, 1)
    assert attributes_sent(relay) == {"3": {"n": 300}}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("ignore", []),
        ("clear", [(Kind.IDENTIFY, {"email": "", "n": ""})]),
        ("delete", [(Kind.SUPPRESS, {}), (Kind.DELETE, {})]),
    ],
)
def test_people_gone_from_a_snapshot_follow_the_removed_policy(
    relay: Relay, users: UserRepository, policy: str, expected: list[tuple[Kind, dict[str, Any]]]
) -> None:
    BulkSync(users, spec(removed=policy), MemorySource(rows(5))).run()
    take_all(relay.outbox)
    run = BulkSync(users, spec(removed=policy), MemorySource(rows(4))).run()
    assert run.removed == 1
    sent = [(op.kind, op.payload.get("attributes", {})) for op in take_all(relay.outbox)]
    assert sent == expected
    gone = users.get("4")
    if policy == "ignore":
        assert gone is not None and gone.attributes == {"email": "p4@example.com", "n": 4}
    elif policy == "clear":
        assert gone is not None and gone.attributes == {}
    else:
        assert gone is None
    # Handled once: the next run neither counts a cleared or erased person again nor resends.
    later = BulkSync(users, spec(removed=policy), MemorySource(rows(4))).run()
    assert (later.removed, later.operations) == (1 if policy == "ignore" else 0, 0)


def test_people_synced_by_the_app_are_never_removed_by_a_source(users: UserRepository) -> None:
    users.sync_user("app-only", {"plan": "pro"})
    BulkSync(users, spec(removed="delete"), MemorySource(rows(3))).run()
    assert users.get("app-only") is not None


def test_a_bad_row_is_reported_with_its_field_and_limit_and_stops_nothing(
    relay: Relay,
    users: UserRepository,
) -> None:
    source = rows(6)
    source[2] = SourceRow(2, {"email": "x" * 2000, "n": 2})  # over the 1,000-byte value limit
    source[4] = SourceRow(4, {"photo": Unconvertible("bytes cannot be sent")})
    run = BulkSync(users, spec(), MemorySource(source)).run()
    assert (run.added, run.invalid) == (4, 2)
    by_person = {e.person: e for e in run.errors}
    assert by_person["2"].field == "attributes.email"
    assert (by_person["2"].limit, by_person["2"].size) == (1000, 2000)
    assert by_person["4"].field == "attributes.photo" and "bytes" in by_person["4"].message
    assert set(attributes_sent(relay)) == {"0", "1", "3", "5"}
    # Not recorded, so the next run tries them again (fixed in the source meanwhile).
    source[2] = SourceRow(2, {"email": "p2@example.com", "n": 2})
    source[4] = SourceRow(4, {"photo": "https://example.com/4.png"})
    retry = BulkSync(users, spec(), MemorySource(source)).run()
    assert (retry.added, retry.invalid, retry.unchanged) == (2, 0, 4)


def test_an_identifier_twice_or_missing_is_reported(users: UserRepository) -> None:
    source = [SourceRow(1, {"a": 1}), SourceRow(1, {"a": 2}), SourceRow(None, {"a": 3})]

    class Unsorted(MemorySource):
        def __init__(self) -> None:
            super().__init__([])
            self.rows = source

    run = BulkSync(users, spec(), Unsorted()).run()
    assert run.added == 1 and run.invalid == 2
    assert {e.field for e in run.errors} == {"id"}


class Crash(Exception):
    pass


class CrashingSource(MemorySource):
    """Fails after ``batches_before_crash`` batches, as a dropped connection would."""

    def __init__(self, source: list[SourceRow], batches_before_crash: int) -> None:
        super().__init__(source)
        self.left = batches_before_crash

    def batches(
        self, *, after: Any | None, since: float | None, batch_size: int
    ) -> Iterator[list[SourceRow]]:
        for batch in super().batches(after=after, since=since, batch_size=batch_size):
            if self.left == 0:
                raise Crash("connection lost")
            self.left -= 1
            yield batch


def test_a_failed_run_resumes_after_its_last_committed_batch(
    relay: Relay, users: UserRepository
) -> None:
    source = rows(45)
    with pytest.raises(Crash):
        BulkSync(users, spec(), CrashingSource(source, 2)).run()
    failed = users.store.runs("default")[0]
    assert (failed.status, failed.last_key, failed.added) == ("failed", 19, 20)
    assert "connection lost" in (failed.error or "")
    resumed_source = MemorySource(source)
    resumed = BulkSync(users, spec(), resumed_source).run()
    assert resumed_source.started_after == [19]
    assert (resumed.run_id, resumed.status, resumed.added) == (failed.run_id, "completed", 45)
    ops = take_all(relay.outbox)
    assert sorted(int(op.identifiers["id"]) for op in ops) == list(range(45))  # each once


def test_incremental_reads_from_the_watermark_less_the_overlap(
    relay: Relay, users: UserRepository
) -> None:
    incremental = spec(mode="incremental", updated_at_column="updated_at", overlap=10.0)
    source = [SourceRow(i, {"n": i}, updated_at=1000.0 + i) for i in range(5)]
    first = BulkSync(users, incremental, MemorySource(source)).run()
    assert (first.since, first.watermark, first.added) == (None, 1004.0, 5)
    # Rows that committed after the first run read, stamped before its newest row: one within
    # the overlap is caught, one older than it is not (the overlap is the bound to choose).
    late = SourceRow(9, {"n": 9}, updated_at=998.0)
    too_late = SourceRow(8, {"n": 8}, updated_at=990.0)
    second = BulkSync(users, incremental, MemorySource([*source, late, too_late])).run()
    assert second.since == 994.0
    assert (second.rows_read, second.added, second.unchanged) == (6, 1, 5)
    assert [op.identifiers["id"] for op in take_all(relay.outbox)][-1] == "9"
    assert second.watermark == 1004.0


def test_an_invalid_row_holds_the_watermark_back_so_it_is_tried_again(
    users: UserRepository,
) -> None:
    incremental = spec(mode="incremental", updated_at_column="updated_at", overlap=0.0)
    source = [
        SourceRow(1, {"n": 1}, updated_at=100.0),
        SourceRow(2, {"n": "x" * 2000}, updated_at=200.0),
        SourceRow(3, {"n": 3}, updated_at=300.0),
    ]
    run = BulkSync(users, incremental, MemorySource(source)).run()
    assert run.invalid == 1 and run.watermark is not None and run.watermark < 200.0
    source[1] = SourceRow(2, {"n": 2}, updated_at=200.0)
    retry = BulkSync(users, incremental, MemorySource(source)).run()
    assert (retry.added, retry.unchanged) == (1, 1)
    assert retry.watermark == 300.0


def test_the_dry_run_counts_and_samples_without_writing(
    relay: Relay, users: UserRepository
) -> None:
    BulkSync(users, spec(), MemorySource(rows(6))).run()
    take_all(relay.outbox)
    source = rows(5)
    source[0] = SourceRow(0, {"email": "new@example.com", "n": 0})
    source.append(SourceRow(99, {"email": "x" * 2000}))
    source.append(SourceRow(50, {"n": 50}))
    plan = BulkSync(users, spec(), MemorySource(source)).plan()
    assert plan.counts == {"added": 1, "changed": 1, "unchanged": 4, "invalid": 1, "removed": 1}
    assert plan.samples["changed"] == [{"person": "0", "attributes": {"email": "new@example.com"}}]
    assert plan.samples["removed"] == [{"person": "5", "attributes": {}}]
    assert plan.errors[0].person == "99"
    assert take_all(relay.outbox) == []
    assert len(users.store.runs("default")) == 1  # the first run only


def test_people_keyed_by_email_are_sent_by_email(relay: Relay, users: UserRepository) -> None:
    by_email = spec(id_column="email", id_type="email")
    source = [SourceRow("ada@example.com", {"plan": "pro"})]
    BulkSync(users, by_email, MemorySource(source)).run()
    (op,) = take_all(relay.outbox)
    assert op.identifiers == {"email": "ada@example.com"}
    assert users.get({"email": "ada@example.com"}) is not None


def full_outbox(tmp_path: Path) -> SqliteOutbox:
    """An outbox holding one operation: full at a maximum depth of 1."""
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    outbox.enqueue([OperationFactory(stamp_env=False).identify("already-queued", {"a": 1})])
    return outbox


class Waits(threading.Event):
    """A stop event whose waits are counted; the second one drains the outbox, as the
    workers would meanwhile, and none really waits."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self.outbox = outbox
        self.count = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.count += 1
        if self.count == 2:
            take_all(self.outbox)
        return self.is_set()


def test_a_full_outbox_holds_the_run_until_the_workers_make_room(tmp_path: Path) -> None:
    outbox = full_outbox(tmp_path)
    relay = Relay(Settings(stamp_env=False, outbox_max_depth=1), outbox=outbox)
    waits = Waits(outbox)
    run = BulkSync(UserRepository(relay), spec(), MemorySource(rows(3)), stop=waits).run()
    assert waits.count >= 2 and run.added == 3
    assert sorted(op.identifiers["id"] for op in take_all(outbox)) == ["0", "1", "2"]
    outbox.close()


def test_a_stop_ends_the_wait_for_room_with_nothing_written(tmp_path: Path) -> None:
    outbox = full_outbox(tmp_path)
    relay = Relay(Settings(stamp_env=False, outbox_max_depth=1), outbox=outbox)
    stop = threading.Event()
    stop.set()
    users = UserRepository(relay)
    with pytest.raises(OutboxFullError):
        BulkSync(users, spec(), MemorySource(rows(3)), stop=stop).run()
    assert [op.identifiers["id"] for op in take_all(outbox)] == ["already-queued"]
    assert users.store.runs("default")[0].status == "failed"
    outbox.close()


def test_a_run_id_sorts_after_the_last_one_even_within_a_millisecond() -> None:
    # A previous id later than now (another process's, a clock set back): one step after it.
    assert next_run_id("7" + "Z" * 24 + "Y") == "7" + "Z" * 25
    assert next_run_id("7" + "0" * 22 + "ZZZ") == "7" + "0" * 21 + "1000"
    with pytest.raises(ValueError, match="no run id"):
        next_run_id("Z" * 26)
    previous = next_run_id(None)
    assert all(next_run_id(previous) > previous for _ in range(100))


def test_an_email_is_one_person_whatever_its_case(relay: Relay, users: UserRepository) -> None:
    by_email = spec(id_column="email", id_type="email", removed="delete")
    BulkSync(users, by_email, MemorySource([SourceRow("Ada@Example.com", {"a": 1})])).run()
    again = BulkSync(users, by_email, MemorySource([SourceRow("ada@example.com", {"a": 1})]))
    run = again.run()
    assert (run.unchanged, run.removed) == (1, 0)
    assert [op.identifiers for op in take_all(relay.outbox)] == [{"email": "ada@example.com"}]
