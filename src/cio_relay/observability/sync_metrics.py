"""Prometheus series of the bulk syncs that ``cio-relay run`` schedules (``sync/schedule.py``).

Series (prefixed ``cio_relay_``), labelled by the sync's name and an outcome only, never by
a person (a name is the operator's, from the syncs file; a person's key would leak personal
data and grow the series without bound):

- ``sync_rows_total{sync,outcome}``: rows by outcome (added, changed, unchanged, invalid,
  removed), each counted once even when a failed run is resumed;
- ``sync_runs_total{sync,status}``: attempts by how they ended: ``completed``, ``failed``
  (retried at the next interval) or ``stopped`` (by the shutdown; resumed at the next start);
- ``sync_run_duration_seconds{sync}``: each attempt's duration (histogram);
- ``sync_last_completed_timestamp_seconds{sync}``: when the sync last completed (Unix
  seconds), read from its stored runs at start and moved by each completed attempt, so an
  alert on its age also fires when a restarted service has not synced for a while.

A run made by ``cio-relay sync run`` in another process is not counted here (its counts are
in its run record: ``cio-relay sync status``, the dashboard's Syncs page).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cio_relay.sync.runs import SyncRun
from cio_relay.sync.schedule import ROW_OUTCOMES, SyncAttempt

__all__ = ["SyncMetrics"]

#: From a small table's second to a warehouse's hour.
_DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)
_STATUSES = ("completed", "failed", "stopped")


class SyncMetrics:
    """The sync series in ``registry`` (the service's ``Metrics.registry``); ``on_attempt`` is
    ``SyncScheduler``'s listener."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Counter(
            "cio_relay_sync_rows",
            "Rows read by bulk syncs, by outcome",
            ["sync", "outcome"],
            registry=registry,
        )
        self.runs = Counter(
            "cio_relay_sync_runs",
            "Bulk sync attempts by how they ended",
            ["sync", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "cio_relay_sync_run_duration_seconds",
            "Duration of each bulk sync attempt",
            ["sync"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.last_completed = Gauge(
            "cio_relay_sync_last_completed_timestamp_seconds",
            "When the bulk sync last completed (unix seconds)",
            ["sync"],
            registry=registry,
        )
        self._latest: dict[str, float] = {}

    def watch(self, names: Iterable[str], runs: Iterable[SyncRun]) -> None:
        """Make every series of the syncs ``names`` present (0 before a first run, so alerts
        see a baseline) and set the last completion from their stored ``runs``."""
        for name in names:
            for outcome in ROW_OUTCOMES:
                self.rows.labels(name, outcome)
            for status in _STATUSES:
                self.runs.labels(name, status)
            self.duration.labels(name)
        for run in runs:
            if run.status == "completed" and run.finished_at is not None:
                self._completed_at(run.name, run.finished_at)

    def on_attempt(self, attempt: SyncAttempt) -> None:
        self.runs.labels(attempt.name, attempt.outcome).inc()
        self.duration.labels(attempt.name).observe(attempt.seconds)
        for outcome, count in attempt.rows.items():
            if count > 0:
                self.rows.labels(attempt.name, outcome).inc(count)
        run = attempt.run
        if attempt.outcome == "completed" and run is not None and run.finished_at is not None:
            self._completed_at(attempt.name, run.finished_at)

    def _completed_at(self, name: str, finished_at: float) -> None:
        if finished_at > self._latest.get(name, 0.0):  # stored runs come in any order
            self._latest[name] = finished_at
            self.last_completed.labels(name).set(finished_at)
