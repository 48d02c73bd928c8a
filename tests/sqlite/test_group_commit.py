"""Group commit: callers that arrive during a commit share the next one; failures stay local."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest

from cio_relay.sqlite.group_commit import MAX_ROUNDS, Failed, GroupCommit, unwrap


def _disk_full() -> sqlite3.OperationalError:
    """The error SQLite raises when the disk is full (SQLITE_FULL), with its result code."""
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = 13  # type: ignore[attr-defined]
    return error


class Gate:
    """A transaction whose first call blocks until the test opens the gate."""

    def __init__(self, fail_group: int | None = None) -> None:
        self.groups: list[list[Any]] = []
        self.threads: list[int] = []
        self.entered = threading.Event()
        self.open = threading.Event()
        self.fail_group = fail_group

    def __call__(self, works: list[Any]) -> list[Any]:
        self.groups.append(list(works))
        self.threads.append(threading.get_ident())
        if len(self.groups) == 1:
            self.entered.set()
            assert self.open.wait(10)
        if self.fail_group == len(self.groups):
            raise _disk_full()
        return [f"done {work}" for work in works]


def _run_leader_then_followers(
    commit: GroupCommit, gate: Gate, waiting: threading.Event
) -> dict[int, Any]:
    """One call leads and blocks in its transaction; seven more queue behind it; then the gate
    opens."""
    results: dict[int, Any] = {}

    def call(i: int) -> None:
        results[i] = commit.submit([i])

    leader = threading.Thread(target=call, args=(0,))
    leader.start()
    assert gate.entered.wait(10)
    followers = [threading.Thread(target=call, args=(i,)) for i in range(1, 8)]
    for thread in followers:
        thread.start()
    assert waiting.wait(10)  # all seven are queued behind the leader's commit
    gate.open.set()
    for thread in [leader, *followers]:
        thread.join()
    return results


def test_callers_queued_behind_a_commit_share_the_next_one() -> None:
    gate = Gate()
    waiting = threading.Event()
    commit = GroupCommit(gate, on_queued=lambda n: n == 7 and waiting.set())
    results = _run_leader_then_followers(commit, gate, waiting)
    assert commit.commits == 2
    assert gate.groups[0] == [0]
    assert sorted(gate.groups[1]) == list(range(1, 8))
    assert results == {i: [f"done {i}"] for i in range(8)}


def test_a_group_the_file_refuses_fails_every_call_in_it_and_only_those() -> None:
    gate = Gate(fail_group=2)
    waiting = threading.Event()
    commit = GroupCommit(gate, on_queued=lambda n: n == 7 and waiting.set())
    results = _run_leader_then_followers(commit, gate, waiting)
    assert results[0] == ["done 0"]
    for i in range(1, 8):
        [outcome] = results[i]
        assert isinstance(outcome, Failed) and "disk is full" in str(outcome.error)
    assert len(gate.groups) == 2  # not run again one by one: the file, not a work, failed
    assert commit.commits == 1
    assert commit.submit(["after"]) == ["done after"]  # the failure left no leader stuck


def test_a_failing_work_fails_alone_and_its_neighbours_commit() -> None:
    transactions: list[list[str]] = []

    def transaction(works: list[str]) -> list[str]:
        transactions.append(works)
        if "bad" in works:
            raise ValueError("bad work")
        return [work.upper() for work in works]

    commit = GroupCommit(transaction)
    outcomes = commit.submit(["a", "bad", "c"])
    assert outcomes[0] == "A" and outcomes[2] == "C"
    assert isinstance(outcomes[1], Failed)
    with pytest.raises(ValueError, match="bad work"):
        unwrap(outcomes[1])
    assert transactions == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert commit.commits == 2


def test_a_lone_caller_writes_on_its_own_thread() -> None:
    seen: list[int] = []

    def transaction(works: list[Any]) -> list[Any]:
        seen.append(threading.get_ident())
        return [len(works)] * len(works)

    commit = GroupCommit(transaction)
    assert commit.submit(["a", "b"]) == [2, 2]
    assert seen == [threading.get_ident()]
    assert commit.commits == 1


def test_a_leader_hands_over_after_max_rounds() -> None:
    """While callers keep arriving, one leader writes MAX_ROUNDS groups, then hands over."""
    entered, proceed = threading.Semaphore(0), threading.Semaphore(0)
    writers: list[int | None] = []

    def transaction(works: list[Any]) -> list[Any]:
        writers.append(threading.get_ident())
        entered.release()
        assert proceed.acquire(timeout=10)
        return list(works)

    queued = threading.Event()
    commit = GroupCommit(transaction, on_queued=lambda n: queued.set())
    threads = [threading.Thread(target=commit.submit, args=([i],)) for i in range(MAX_ROUNDS + 2)]
    threads[0].start()
    assert entered.acquire(timeout=10)
    for thread in threads[1:]:  # one caller queues during each commit
        queued.clear()
        thread.start()
        assert queued.wait(10)
        proceed.release()
        assert entered.acquire(timeout=10)
    proceed.release()
    for thread in threads:
        thread.join()
    assert commit.commits == MAX_ROUNDS + 2
    assert writers[:MAX_ROUNDS] == [threads[0].ident] * MAX_ROUNDS
    assert writers[MAX_ROUNDS:] == [threads[MAX_ROUNDS].ident] * 2  # the successor leads on


@pytest.mark.parametrize("threads", [2, 8])
def test_every_call_gets_its_own_outcomes_under_contention(threads: int) -> None:
    commit = GroupCommit(lambda works: [work * 10 for work in works])
    results: list[list[list[int]]] = [[] for _ in range(threads)]

    def work(t: int) -> None:
        for i in range(300):
            results[t].append(commit.submit(list(range(i % 5 + 1))))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    expected = [[n * 10 for n in range(i % 5 + 1)] for i in range(300)]
    assert all(got == expected for got in results)
    assert commit.commits <= threads * 300
