"""Group commit: concurrent writers share one transaction (leader/follower).

Each ``submit`` brings a list of *works* (functions of the connection). The first caller that
finds no commit under way becomes the leader: it takes every call queued so far and runs all
their works with one ``transaction`` (one commit, one fsync), then wakes each follower whose
works it ran, and hands leadership to the first call that queued meanwhile (which takes
everything queued by then, and so on). A lone caller leads its own group at once, on its own
thread: no hand-off, no wake-up, so single-thread latency is one small commit.

Each follower sleeps on its own lock, so a commit wakes exactly the threads it finished plus one
successor (no thundering herd on a shared condition).

Failures. A group that fails because the file cannot take writes (busy, locked, full,
unreadable: ``is_environmental``) fails every work in it at once: running each again would
multiply the wait. Any other failure is one work's fault: the group is run again one work per
transaction, so that the work's neighbours still commit, and only it fails. Every outcome is the
work's return value, or a ``Failed`` holding its exception.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from cio_relay.sqlite.connection import is_environmental

__all__ = ["MAX_ROUNDS", "Failed", "GroupCommit", "Transaction", "unwrap"]

#: How many commits in a row one leader may write before handing over (see ``_lead``).
MAX_ROUNDS = 4

#: Runs works in one transaction; returns their values, or raises with nothing committed.
Transaction = Callable[[list[Any]], list[Any]]


class Failed:
    """The outcome of a work that raised: its exception."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def unwrap(outcome: Any) -> Any:
    """A work's value, or its exception raised."""
    if isinstance(outcome, Failed):
        raise outcome.error
    return outcome


class _Call:
    __slots__ = ("lead", "outcomes", "wake", "works")

    def __init__(self, works: Sequence[Any]) -> None:
        self.works = works
        self.outcomes: list[Any] = []
        self.lead = False  # set by a leader handing over: this call leads the next group
        self.wake: threading.Lock | None = None  # held while the call waits as a follower


class GroupCommit:
    """Funnels ``submit`` calls from many threads into few ``transaction`` calls.

    ``on_queued`` (tests, diagnostics) hears the queue length each time a call waits behind a
    leader.
    """

    def __init__(
        self, transaction: Transaction, *, on_queued: Callable[[int], None] | None = None
    ) -> None:
        self._transaction = transaction
        self._on_queued = on_queued
        self._lock = threading.Lock()
        self._queued: list[_Call] = []
        self._leading = False
        self.commits = 0  # transactions that committed: fewer than ``submit`` calls

    def submit(self, works: Sequence[Any]) -> list[Any]:
        """Run ``works`` in a transaction shared with concurrent callers; their outcomes."""
        call = _Call(works)
        with self._lock:
            if self._leading:
                call.wake = threading.Lock()
                call.wake.acquire()
                self._queued.append(call)
                queued = len(self._queued)
            else:
                self._leading = True
        if call.wake is not None:
            if self._on_queued is not None:
                self._on_queued(queued)
            self._wait(call)
            if not call.lead:
                return call.outcomes
        self._lead(call)
        return call.outcomes

    def _wait(self, call: _Call) -> None:
        assert call.wake is not None
        try:
            call.wake.acquire()
        except BaseException:
            # Interrupted (KeyboardInterrupt in the main thread). If no leader has taken the call
            # yet, withdraw it; otherwise its fate is being decided: wait for it, and if
            # leadership was handed to it, lead before raising so that nobody is left waiting.
            with self._lock:
                if call in self._queued:
                    self._queued.remove(call)
                    raise
            call.wake.acquire()
            if call.lead:
                self._lead(call)
            raise

    def _lead(self, first: _Call) -> None:
        # The leader keeps leading while work is queued, for up to MAX_ROUNDS commits: waking a
        # sleeping thread to take over costs a context switch on the critical path, and the
        # leader is already running. The cap bounds how long its own caller waits for others.
        with self._lock:
            group = [first, *self._queued]
            self._queued = []
        for _ in range(MAX_ROUNDS):
            self._commit(group, leader=first)
            with self._lock:
                if not self._queued:
                    self._leading = False
                    return
                group, self._queued = self._queued, []
        # Still busy: the first call still queued leads the next groups.
        with self._lock:
            self._queued = group + self._queued
            successor = self._queued.pop(0)
            successor.lead = True
        assert successor.wake is not None
        successor.wake.release()

    def _commit(self, group: list[_Call], leader: _Call) -> None:
        works = [work for call in group for work in call.works]
        outcomes = self._outcomes(works)
        start = 0
        for call in group:
            call.outcomes = outcomes[start : start + len(call.works)]
            start += len(call.works)
            if call is not leader:
                assert call.wake is not None
                call.wake.release()

    def _outcomes(self, works: list[Any]) -> list[Any]:
        try:
            values = self._transaction(works)
        except Exception as exc:
            if len(works) == 1 or is_environmental(exc):
                return [Failed(exc)] * len(works)
            return [self._alone(work) for work in works]  # one bad work: the rest still commit
        except BaseException as exc:  # interrupted: nothing committed, every caller hears it
            return [Failed(exc)] * len(works)
        self.commits += 1
        return values

    def _alone(self, work: Any) -> Any:
        try:
            [value] = self._transaction([work])
        except Exception as exc:
            return Failed(exc)
        self.commits += 1
        return value
