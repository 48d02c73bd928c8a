"""``MemoryUserStore``: the user store in process memory, beside a ``MemoryOutbox`` (tests).

One lock around each plan, its enqueue and its state change; the enqueue checks every
operation before storing any, and the state is set only once it returned (store.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from cio_relay.outbox.base import Outbox
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.sync.runs import RunStatus, SourceMark, SyncRun
from cio_relay.sync.store import Change, Plan, UserState

__all__ = ["MemoryUserStore"]


class MemoryUserStore:
    """The ``UserStore`` in process memory (module docstring)."""

    def __init__(self, outbox: MemoryOutbox) -> None:
        self.outbox: Outbox = outbox
        self._lock = threading.Lock()
        self._states: dict[str, UserState] = {}
        self._marks: dict[str, SourceMark] = {}
        self._runs: dict[str, SyncRun] = {}

    def get(self, person_id: str) -> UserState | None:
        with self._lock:
            return self._states.get(person_id)

    def apply(self, person_id: str, plan: Plan) -> Change | None:
        return self.apply_batch([(person_id, plan)], None, None)[0]

    def states(self, keys: Sequence[str]) -> dict[str, UserState]:
        with self._lock:
            return {k: self._states[k] for k in keys if k in self._states}

    def apply_batch(
        self,
        plans: Sequence[tuple[str, Plan]],
        mark: SourceMark | None,
        checkpoint: Callable[[], SyncRun] | None,
    ) -> list[Change | None]:
        with self._lock:
            changes = [plan(self._states.get(key)) for key, plan in plans]
            run = None if checkpoint is None else checkpoint()
            operations = [op for change in changes if change for op in change.operations]
            if operations:  # a webhook's change enqueues nothing
                self.outbox.enqueue(operations)  # raises before storing anything
            for (key, _), change in zip(plans, changes, strict=True):
                if change is not None:
                    self._store(key, change.state)
                if mark is not None and key in self._states:
                    self._marks[key] = _forward(self._marks.get(key), mark)
            if run is not None:
                self._runs[run.run_id] = run
            return changes

    def _store(self, key: str, state: UserState | None) -> None:
        if state is None:
            self._states.pop(key, None)
            self._marks.pop(key, None)
        else:
            self._states[key] = state

    def unseen(self, mark: SourceMark, after: str | None, limit: int) -> list[UserState]:
        with self._lock:
            keys = sorted(
                key
                for key, seen in self._marks.items()
                if seen.name == mark.name
                and (seen.run_id or "") < (mark.run_id or "")
                and (after is None or key > after)
            )
            return [self._states[key] for key in keys[:limit]]

    def save_run(self, run: SyncRun) -> None:
        with self._lock:
            self._runs[run.run_id] = run

    def runs(
        self, name: str | None = None, limit: int = 20, status: RunStatus | None = None
    ) -> list[SyncRun]:
        with self._lock:
            chosen = [
                r
                for r in self._runs.values()
                if name in (None, r.name) and status in (None, r.status)
            ]
        return sorted(chosen, key=lambda r: (r.started_at, r.run_id), reverse=True)[:limit]

    def forget_runs(self, name: str) -> int:
        with self._lock:
            gone = [run_id for run_id, run in self._runs.items() if run.name == name]
            for run_id in gone:
                del self._runs[run_id]
            return len(gone)

    def close(self) -> None:
        """Nothing to release: the outbox is closed by its owner."""


def _forward(current: SourceMark | None, mark: SourceMark) -> SourceMark:
    """A mark only moves forward within a sync (runs.SourceMark): run ids sort by start."""
    if (
        current is not None
        and mark.name is not None
        and current.name == mark.name
        and (current.run_id or "") > (mark.run_id or "")
    ):
        return current
    return mark
