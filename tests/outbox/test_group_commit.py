"""Group commit: callers that arrive during a commit share the next one; all or nothing."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from cio_relay.outbox.group_commit import MAX_ROUNDS, GroupCommit


class Gate:
    """A ``write`` whose first call blocks until the test opens the gate."""

    def __init__(self, fail_group: int | None = None) -> None:
        self.groups: list[list[list[Any]]] = []
        self.threads: list[int] = []
        self.entered = threading.Event()
        self.open = threading.Event()
        self.fail_group = fail_group

    def __call__(self, groups: list[Sequence[Any]]) -> list[int]:
        self.groups.append([list(records) for records in groups])
        self.threads.append(threading.get_ident())
        if len(self.groups) == 1:
            self.entered.set()
            assert self.open.wait(10)
        if self.fail_group == len(self.groups):
            raise OSError("disk full")
        return [len(records) for records in groups]


def _run_leader_then_followers(
    commit: GroupCommit, gate: Gate, waiting: threading.Event
) -> dict[int, Any]:
    """One call leads and blocks in write; seven more queue behind it; then the gate opens."""
    results: dict[int, Any] = {}

    def call(i: int) -> None:
        try:
            results[i] = commit.submit([i] * max(i, 1))
        except OSError as exc:
            results[i] = exc

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
    assert gate.groups[0] == [[0]]
    assert sorted(gate.groups[1]) == [[i] * i for i in range(1, 8)]
    assert results == {0: 1, **{i: i for i in range(1, 8)}}


def test_a_failed_group_fails_every_call_in_it_and_only_those() -> None:
    gate = Gate(fail_group=2)
    waiting = threading.Event()
    commit = GroupCommit(gate, on_queued=lambda n: n == 7 and waiting.set())
    results = _run_leader_then_followers(commit, gate, waiting)
    assert results[0] == 1
    assert all(isinstance(results[i], OSError) for i in range(1, 8))
    assert commit.commits == 1
    assert commit.submit(["after"]) == 1  # the failure left no leader stuck


def test_a_lone_caller_writes_on_its_own_thread() -> None:
    seen: list[int] = []

    def write(groups: list[Sequence[Any]]) -> list[int]:
        seen.append(threading.get_ident())
        return [len(records) - 1 for records in groups]

    commit = GroupCommit(write)
    assert commit.submit(["a", "b"]) == 1
    assert seen == [threading.get_ident()]
    assert commit.commits == 1


def test_a_leader_hands_over_after_max_rounds() -> None:
    """While callers keep arriving, one leader writes MAX_ROUNDS groups, then hands over."""
    entered, proceed = threading.Semaphore(0), threading.Semaphore(0)
    writers: list[int | None] = []

    def write(groups: list[Sequence[Any]]) -> list[int]:
        writers.append(threading.get_ident())
        entered.release()
        assert proceed.acquire(timeout=10)
        return [len(records) for records in groups]

    queued = threading.Event()
    commit = GroupCommit(write, on_queued=lambda n: queued.set())
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
def test_every_call_returns_its_own_count_under_contention(threads: int) -> None:
    commit = GroupCommit(lambda groups: [len(records) for records in groups])
    results: list[list[int]] = [[] for _ in range(threads)]

    def work(t: int) -> None:
        for i in range(300):
            results[t].append(commit.submit(list(range(i % 5 + 1))))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(got == [i % 5 + 1 for i in range(300)] for got in results)
