"""The dashboard's Syncs page: the bulk syncs' last runs, read from the user store.

Runs are recorded beside the outbox (sync/runs.py), whoever ran them: the scheduler of
``cio-relay run`` or ``cio-relay sync run`` in another process. The store is opened on the
first visit, not with the app, so a service that never shows the page never touches the sync
tables. With an outbox that cannot hold the sync state (Redis) the page says why instead.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cio_relay.errors import ConfigError
from cio_relay.outbox.base import Outbox
from cio_relay.sync import UserStore, user_store_for
from cio_relay.sync.runs import RowError, SyncRun

__all__ = ["ERRORS_SHOWN", "RUNS_SHOWN", "SyncRuns", "SyncsView"]

#: Runs on the page, newest first, every sync together.
RUNS_SHOWN = 50
#: Row errors shown of each sync's latest run that has some.
ERRORS_SHOWN = 10


@dataclass(frozen=True)
class SyncsView:
    """What the page shows: the runs, newest first; per sync, a sample of its latest run's row
    errors; or why there is nothing to show (``unavailable``)."""

    runs: list[SyncRun]
    errors: dict[str, tuple[SyncRun, list[RowError]]]
    unavailable: str | None = None


class SyncRuns:
    """Reads the runs of the user store beside ``outbox`` (blocking: call off the loop)."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._store: UserStore | None = None
        self._unavailable: str | None = None
        self._opening = threading.Lock()

    def view(self) -> SyncsView:
        store = self._opened()
        if store is None:
            return SyncsView([], {}, self._unavailable)
        runs = store.runs(None, limit=RUNS_SHOWN)
        errors: dict[str, tuple[SyncRun, list[RowError]]] = {}
        for run in runs:  # newest first: each sync's latest run with errors
            if run.errors and run.name not in errors:
                errors[run.name] = (run, list(run.errors[:ERRORS_SHOWN]))
        return SyncsView(runs, errors)

    def _opened(self) -> UserStore | None:
        with self._opening:
            if self._store is None and self._unavailable is None:
                try:
                    self._store = user_store_for(self._outbox)
                except ConfigError as refused:
                    self._unavailable = str(refused)
            return self._store
