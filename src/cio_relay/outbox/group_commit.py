"""Group commit: concurrent writers share one transaction (leader/follower).

The first caller that finds no commit under way becomes the leader: it takes every call queued so
far, writes them all with one ``write`` (one transaction, one fsync), then wakes each follower
whose work it wrote, and hands leadership to the first call that queued meanwhile (which takes
everything queued by then, and so on). A lone caller leads its own group at once, on its own
thread: no hand-off, no wake-up, so single-thread latency is one small commit.

Each follower sleeps on its own lock, so a commit wakes exactly the threads it finished plus one
successor (no thundering herd on a shared condition). Either a whole group is written or none
of it: on an error every call in the group raises it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["MAX_ROUNDS", "GroupCommit"]

#: How many commits in a row one leader may write before handing over (see ``_lead``).
MAX_ROUNDS = 4

Records = Sequence[Any]


class _Call:
    __slots__ = ("added", "error", "lead", "records", "wake")

    def __init__(self, records: Records) -> None:
        self.records = records
        self.added = 0
        self.error: BaseException | None = None
        self.lead = False  # set by a leader handing over: this call leads the next group
        self.wake: threading.Lock | None = None  # held while the call waits as a follower

    def outcome(self) -> int:
        if self.error is not None:
            raise self.error
        return self.added


class GroupCommit:
    """Funnels ``submit`` calls from many threads into few ``write`` calls.

    ``write(groups)`` receives the records of every call in the group, writes them in one
    transaction, and returns how many of each call's records were new. ``on_queued`` (tests,
    diagnostics) hears the queue length each time a call waits behind a leader.
    """

    def __init__(
        self,
        write: Callable[[list[Records]], list[int]],
        *,
        on_queued: Callable[[int], None] | None = None,
    ) -> None:
        self._write = write
        self._on_queued = on_queued  # called with the queue length when a call starts to wait
        self._lock = threading.Lock()
        self._queued: list[_Call] = []
        self._leading = False
        self.commits = 0  # how many ``write`` calls succeeded: fewer than ``submit`` calls

    def submit(self, records: Records) -> int:
        call = _Call(records)
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
                return call.outcome()
        self._lead(call)
        return call.outcome()

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
        # sleeping thread to take over costs tens of microseconds on the critical path, and the
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
        try:
            counts = self._write([call.records for call in group])
            self.commits += 1
            for call, added in zip(group, counts, strict=True):
                call.added = added
        except BaseException as exc:  # all or nothing: every call in the group fails alike
            for call in group:
                call.error = exc
        for call in group:
            if call is not leader:
                assert call.wake is not None
                call.wake.release()
