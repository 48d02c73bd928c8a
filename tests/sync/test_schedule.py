"""``SyncScheduler``: scheduled bulk syncs, driven by ``tick()`` and a fake clock (no thread,
no sleep), on a real SQLite source file and a SQLite outbox; and the metrics they move."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cio_relay.config import Settings
from cio_relay.observability.sync_metrics import SyncMetrics
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.relay import Relay
from cio_relay.sync import UserRepository
from cio_relay.sync.runs import SyncRun
from cio_relay.sync.schedule import SyncAttempt, SyncScheduler
from cio_relay.sync.sources import Source, open_source
from cio_relay.sync.spec import SyncSpec
from tests.fixtures.fake_clock import FakeClock
from tests.sync.conftest import take_all

EVERY = 600.0


def people_db(path: Path, count: int, *, start: int = 0) -> str:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE IF NOT EXISTS people (id INTEGER PRIMARY KEY, plan TEXT)")
        conn.executemany(
            "INSERT OR REPLACE INTO people VALUES (?, ?)",
            [(i, f"plan-{i}") for i in range(start, start + count)],
        )
    return f"sqlite:///{path}"


@pytest.fixture
def users(tmp_path: Path) -> Iterator[UserRepository]:
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    yield UserRepository(Relay(Settings(stamp_env=False), outbox=outbox))
    outbox.close()


def spec(url: str, **fields: Any) -> SyncSpec:
    return SyncSpec(
        **{"name": "people", "source": url, "table": "people", "every": EVERY, **fields}
    )


def scheduler(users: UserRepository, specs: list[SyncSpec], clock: FakeClock, **kw: Any) -> Any:
    heard: list[SyncAttempt] = []
    return heard, SyncScheduler(users, specs, on_attempt=heard.append, clock=clock, **kw)


def test_a_sync_runs_at_once_then_every_interval_and_only_scheduled_ones(
    users: UserRepository, tmp_path: Path
) -> None:
    url = people_db(tmp_path / "app.db", 5)
    clock = FakeClock()
    on_demand = SyncSpec(name="on-demand", source=url, table="people")
    heard, schedule = scheduler(users, [spec(url), on_demand], clock)

    assert [s.name for s in schedule.specs] == ["people"]
    first = schedule.tick()
    assert [(a.name, a.outcome, a.rows["added"]) for a in first] == [("people", "completed", 5)]
    assert len(take_all(users.store.outbox)) == 5
    assert schedule.tick() == []  # not due again yet
    assert schedule.seconds_to_next() == EVERY

    clock.advance(EVERY - 1)
    assert schedule.tick() == []
    clock.advance(1)
    (second,) = schedule.tick()
    assert (second.outcome, second.rows["unchanged"], second.rows["added"]) == ("completed", 5, 0)
    assert heard == [*first, second]
    assert [run.status for run in users.store.runs("people")] == ["completed", "completed"]
    assert users.store.runs("on-demand") == []


def test_a_failed_run_is_reported_and_resumed_from_its_checkpoint_at_the_next_interval(
    users: UserRepository, tmp_path: Path
) -> None:
    url = people_db(tmp_path / "app.db", 30)
    clock = FakeClock()
    opened: list[int] = []

    def breaks_after_two_batches(sync: SyncSpec) -> Source:
        """The real source, which fails while reading its third batch, the first time only."""
        source = open_source(sync)
        opened.append(1)
        if len(opened) > 1:
            return source
        real = source.batches

        def batches(**kw: Any) -> Iterator[Any]:
            for number, rows in enumerate(real(**kw)):
                if number == 2:
                    raise sqlite3.OperationalError("disk I/O error")
                yield rows

        source.batches = batches  # type: ignore[method-assign]
        return source

    _, schedule = scheduler(
        users, [spec(url, batch_size=10)], clock, sources=breaks_after_two_batches
    )
    (failed,) = schedule.tick()
    assert failed.outcome == "failed"
    assert failed.error == "OperationalError: disk I/O error"
    assert failed.run is not None
    assert (failed.run.status, failed.run.last_key, failed.rows["added"]) == ("failed", 19, 20)
    assert schedule.next_due["people"] == clock() + EVERY  # retried at the next interval

    clock.advance(EVERY)
    (resumed,) = schedule.tick()
    assert resumed.outcome == "completed"
    assert resumed.run is not None and resumed.run.run_id == failed.run.run_id
    assert resumed.rows["added"] == 10  # this attempt's rows only: the first 20 were counted
    assert (resumed.run.added, resumed.run.rows_read) == (30, 30)
    assert len({op.identifiers["id"] for op in take_all(users.store.outbox)}) == 30


def test_at_start_the_stored_runs_say_when_each_sync_is_due(
    users: UserRepository, tmp_path: Path
) -> None:
    url = people_db(tmp_path / "app.db", 3)
    clock = FakeClock(now=10_000.0)
    _, earlier = scheduler(users, [spec(url)], clock)
    earlier.tick()  # completed at 10,000

    clock.advance(100)
    _, restarted = scheduler(users, [spec(url)], clock)
    assert restarted.next_due["people"] == 10_000.0 + EVERY
    assert restarted.tick() == []

    users.store.save_run(SyncRun("01-left-running", "people", "snapshot", clock()))
    _, after_a_crash = scheduler(users, [spec(url)], clock)
    assert after_a_crash.next_due["people"] == clock()  # a run left running resumes at once


def test_stopping_ends_a_run_after_the_batch_in_progress_and_it_resumes_later(
    users: UserRepository, tmp_path: Path
) -> None:
    url = people_db(tmp_path / "app.db", 30)
    clock = FakeClock()
    stop = threading.Event()
    real_commit = users.store.apply_batch

    def stop_during_the_first_batch(*args: Any) -> Any:
        stop.set()  # the shutdown arrives while a batch commits
        return real_commit(*args)

    users.store.apply_batch = stop_during_the_first_batch  # type: ignore[method-assign]
    _, schedule = scheduler(users, [spec(url, batch_size=10)], clock, stop=stop)
    (stopped,) = schedule.tick()
    users.store.apply_batch = real_commit  # type: ignore[method-assign]

    assert stopped.outcome == "stopped"
    assert stopped.run is not None
    assert (stopped.run.status, stopped.run.last_key) == ("failed", 9)
    assert "SyncStopped" in (stopped.error or "")
    _, next_start = scheduler(users, [spec(url, batch_size=10)], clock)
    assert next_start.tick() == []  # due again an interval after it stopped
    clock.advance(EVERY)
    (resumed,) = next_start.tick()
    assert resumed.outcome == "completed"
    assert resumed.run is not None and resumed.run.run_id == stopped.run.run_id
    assert (resumed.rows["added"], resumed.run.added) == (20, 30)


def test_the_metrics_count_rows_once_runs_by_status_and_the_last_completion(
    users: UserRepository, tmp_path: Path
) -> None:
    path = tmp_path / "app.db"
    url = people_db(path, 4)
    clock = FakeClock(now=50_000.0)
    registry = CollectorRegistry()
    metrics = SyncMetrics(registry)
    metrics.watch(["people"], users.store.runs())

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"cio_relay_sync_{name}", {"sync": "people", **labels})

    assert sample("runs_total", status="failed") == 0.0
    assert sample("last_completed_timestamp_seconds") is None

    schedule = SyncScheduler(users, [spec(url)], on_attempt=metrics.on_attempt, clock=clock)
    schedule.tick()
    assert sample("rows_total", outcome="added") == 4.0
    assert sample("runs_total", status="completed") == 1.0
    assert sample("last_completed_timestamp_seconds") == 50_000.0
    assert sample("run_duration_seconds_count") == 1.0

    people_db(path, 1, start=4)
    clock.advance(EVERY)
    schedule.tick()
    assert sample("rows_total", outcome="added") == 5.0
    assert sample("rows_total", outcome="unchanged") == 4.0
    assert sample("last_completed_timestamp_seconds") == 50_000.0 + EVERY

    restarted = CollectorRegistry()
    SyncMetrics(restarted).watch(["people"], users.store.runs())  # read from the stored runs
    last = restarted.get_sample_value(
        "cio_relay_sync_last_completed_timestamp_seconds", {"sync": "people"}
    )
    assert last == 50_000.0 + EVERY


def test_a_store_that_fails_outside_the_run_fails_the_attempt_and_keeps_the_schedule(
    users: UserRepository, tmp_path: Path
) -> None:
    url = people_db(tmp_path / "app.db", 3)
    clock = FakeClock()
    heard, schedule = scheduler(users, [spec(url)], clock)
    real_runs = users.store.runs

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    users.store.runs = unreadable  # type: ignore[method-assign]
    (failed,) = schedule.tick()
    users.store.runs = real_runs  # type: ignore[method-assign]

    assert (failed.outcome, failed.run, failed.error) == (
        "failed",
        None,
        "OperationalError: database is locked",
    )
    assert heard == [failed]
    assert schedule.seconds_to_next() == EVERY  # not due again at once: no busy loop
    clock.advance(EVERY)
    (completed,) = schedule.tick()
    assert (completed.outcome, completed.rows["added"]) == ("completed", 3)


def test_the_thread_runs_a_due_sync_at_once_and_stop_ends_its_wait(
    users: UserRepository, tmp_path: Path
) -> None:
    url = people_db(tmp_path / "app.db", 3)
    ran = threading.Event()
    schedule = SyncScheduler(users, [spec(url)], on_attempt=lambda attempt: ran.set())

    schedule.start()
    assert ran.wait(30), "the scheduler thread did not run the due sync"
    assert schedule.running  # waiting for the next interval
    schedule.stop()  # wakes the wait: no interval to sit out
    assert not schedule.running
    assert [run.status for run in users.store.runs("people")] == ["completed"]
