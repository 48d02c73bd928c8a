"""``SyncScheduler``: the syncs with ``every`` run periodically inside ``cio-relay run``.

One background thread runs the due syncs one after another (a sync is never run twice at
once, and the syncs share the outbox's one writer anyway, so running them side by side would
gain little). A sync is next due ``every`` seconds after its last attempt *ended*, whatever
its outcome, so a slow run never piles up behind itself:

- when the scheduler starts, the sync's stored runs say when: never run, or a run left
  ``running`` by a process that died, is due at once (the latter resumes from its
  checkpoint); a completed or failed one is due ``every`` after it finished;
- a failed attempt (the source unreachable, a bad column) is logged and reported, and tried
  again at the next interval, where ``BulkSync`` resumes it from its checkpoint.

A failed sync does not make the service unready: readiness says whether the relay can accept
and deliver operations, and a source database being down stops neither (a load balancer
taking the service out would stop ingestion for a problem ingestion does not have). It shows
on the dashboard, in the log and in ``cio_relay_sync_runs_total{status="failed"}``.

Stopping (the runner's shutdown) sets the stop event: a run waiting on a full outbox stops
waiting (``BulkSync(stop=...)``), and a run reading its source stops after the batch it is
committing (``SyncStopped`` raised from the progress callback), so a shutdown never waits for
a whole table. The run is recorded as failed with ``SyncStopped`` as its error and resumes from
its checkpoint at the next start; the attempt's outcome is ``stopped``, not ``failed``.

``tick()`` does one round (the due syncs, then returns): tests drive the scheduler with it and
a fake clock, without the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from cio_relay.sync.bulk import BulkSync
from cio_relay.sync.repository import UserRepository
from cio_relay.sync.runs import SyncRun
from cio_relay.sync.sources import Source
from cio_relay.sync.spec import SyncSpec

__all__ = ["ROW_OUTCOMES", "AttemptOutcome", "SyncAttempt", "SyncScheduler", "SyncStopped"]

log = logging.getLogger("cio_relay.sync")

#: The per-row outcomes a run counts (``SyncRun`` fields of the same names).
ROW_OUTCOMES = ("added", "changed", "unchanged", "invalid", "removed")
AttemptOutcome = Literal["completed", "failed", "stopped"]
#: How long ``stop()`` waits for the run in progress to reach the end of its batch.
_JOIN_SECONDS = 30.0


class SyncStopped(Exception):
    """The scheduler was stopped while a run was in progress (it resumes at the next start)."""


@dataclass(frozen=True)
class SyncAttempt:
    """One scheduled attempt: how it ended, the run record as stored afterwards (None when
    even that could not be read), how long it took, and the rows it counted by outcome (this
    attempt's share only: a resumed run's record also holds the earlier attempts' counts)."""

    name: str
    outcome: AttemptOutcome
    run: SyncRun | None
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class SyncScheduler:
    """Runs ``specs`` that have ``every`` through ``users``, periodically (module docstring).

    ``on_attempt`` hears every attempt once it ended (the metrics count them); ``sources``
    opens a spec's source (default: ``open_source``, by ``BulkSync``); ``clock`` is wall-clock
    seconds.
    """

    def __init__(
        self,
        users: UserRepository,
        specs: Iterable[SyncSpec],
        *,
        on_attempt: Callable[[SyncAttempt], None] | None = None,
        sources: Callable[[SyncSpec], Source] | None = None,
        clock: Callable[[], float] = time.time,
        stop: threading.Event | None = None,
    ) -> None:
        self.users = users
        self.specs = [spec for spec in specs if spec.every is not None]
        self._on_attempt = on_attempt or (lambda attempt: None)
        self._sources = sources
        self._clock = clock
        self._stop = stop or threading.Event()
        self._thread: threading.Thread | None = None
        now = clock()
        self.next_due: dict[str, float] = {
            spec.name: self._first_due(spec, now) for spec in self.specs
        }

    def __repr__(self) -> str:
        return f"SyncScheduler({[spec.name for spec in self.specs]!r})"

    # --- one round ----------------------------------------------------------------------------

    def tick(self) -> list[SyncAttempt]:
        """Run every sync that is due now, one after another; their attempts."""
        attempts = []
        for spec in self.specs:
            if self._stop.is_set():
                break
            if self._clock() >= self.next_due[spec.name]:
                attempts.append(self.run_now(spec))
        return attempts

    def run_now(self, spec: SyncSpec) -> SyncAttempt:
        """One attempt at ``spec``, reported to ``on_attempt``; it is next due ``every``
        seconds from now. Whatever fails in it (the source, the store) fails the attempt only."""
        every = spec.every or 0.0
        started = self._clock()
        before = run = None
        outcome: AttemptOutcome = "completed"
        error = None
        try:
            before = _resumable(self.users, spec)
            source = self._sources(spec) if self._sources is not None else None
            sync = BulkSync(self.users, spec, source, clock=self._clock, stop=self._stop)
            run = sync.run(on_progress=self._check_stop)
        except Exception as exc:
            outcome = "stopped" if self._stop.is_set() else "failed"
            error = f"{type(exc).__name__}: {exc}"[:500]
            run = _latest_or_none(self.users, spec.name)
        # From the attempt's end, so a slow run never piles up behind itself.
        self.next_due[spec.name] = self._clock() + every
        seconds = max(0.0, self._clock() - started)
        attempt = SyncAttempt(spec.name, outcome, run, seconds, _rows(before, run), error)
        self._report(attempt, every)
        return attempt

    def seconds_to_next(self) -> float:
        """Seconds until the next sync is due (0 when one is due now; an hour when none is
        scheduled, which never happens while the thread runs)."""
        if not self.next_due:
            return 3600.0
        return max(0.0, min(self.next_due.values()) - self._clock())

    # --- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run the schedule on a daemon thread until ``stop()``."""
        if self._thread is None and self.specs:
            self._thread = threading.Thread(
                target=self._run_forever, name="cio-relay-syncs", daemon=True
            )
            self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the thread is alive (running a sync or waiting for the next one)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop after the batch in progress; waits for the thread a bounded time (a source
        query that blocks cannot hold the shutdown: the thread is a daemon, and whatever it
        had not committed is read again at the next start)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_JOIN_SECONDS)

    def _run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bug, or the store failing outside a run: keep the schedule
                log.exception("bulk sync scheduler: a round failed")
            if self._stop.wait(self.seconds_to_next()):
                break

    # --- plumbing -----------------------------------------------------------------------------

    def _first_due(self, spec: SyncSpec, now: float) -> float:
        last = _latest(self.users, spec.name)
        if last is None or last.status == "running" or last.finished_at is None:
            return now
        assert spec.every is not None
        return min(now + spec.every, last.finished_at + spec.every)

    def _check_stop(self, run: SyncRun) -> None:
        if self._stop.is_set() and run.status == "running":
            raise SyncStopped("the service is shutting down; the next start resumes the run")

    def _report(self, attempt: SyncAttempt, every: float) -> None:
        if attempt.outcome == "failed":
            log.warning(
                "bulk sync %s failed (%s); tried again in %g s from its checkpoint",
                attempt.name,
                attempt.error,
                every,
            )
        else:
            log.info("bulk sync %s %s in %.1f s", attempt.name, attempt.outcome, attempt.seconds)
        try:
            self._on_attempt(attempt)
        except Exception:  # a listener's bug must not stop the schedule
            log.exception("bulk sync %s: on_attempt failed", attempt.name)


def _latest(users: UserRepository, name: str) -> SyncRun | None:
    runs = users.store.runs(name, limit=1)
    return runs[0] if runs else None


def _latest_or_none(users: UserRepository, name: str) -> SyncRun | None:
    """The latest run, or None when even the store cannot say (it is what just failed)."""
    try:
        return _latest(users, name)
    except Exception:
        return None


def _resumable(users: UserRepository, spec: SyncSpec) -> SyncRun | None:
    """The run the next ``BulkSync.run`` of ``spec`` resumes (its counts are not this
    attempt's), or None when it starts a new one."""
    last = _latest(users, spec.name)
    if last is not None and last.status != "completed" and last.mode == spec.mode:
        return last
    return None


def _rows(before: SyncRun | None, after: SyncRun | None) -> dict[str, int]:
    """The rows an attempt counted by outcome: the record's counts less those it resumed with."""
    if after is None:
        return {}
    resumed = before is not None and before.run_id == after.run_id
    return {
        outcome: getattr(after, outcome) - (getattr(before, outcome) if resumed else 0)
        for outcome in ROW_OUTCOMES
    }
