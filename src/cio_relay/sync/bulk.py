"""``BulkSync``: people from a source (a table, a query, a file) kept in step with Customer.io.

    users = UserRepository(relay)
    spec = SyncSpec(source="postgresql://app@127.0.0.1/app", table="users")
    report = BulkSync(users, spec).run()      # a SyncRun: counts, errors, checkpoint
    relay.worker().drain()

A run reads the source in key order, a batch at a time (``Source.batches``). Each row is a
``sync_user`` of the row's attributes (plans.py: unchanged rows send nothing, changed ones only
their changed keys), and each batch commits its people's states, their outbox operations and
the run's checkpoint (``SyncRun``: the last key, the counts) in one transaction
(``UserStore.apply_batch``). So a run killed at any point, SIGKILL included, resumes from the
key after the last committed batch and sends nothing twice: what was committed is in the outbox
and recorded; what was not is read again. The hash of the stored state would catch a row read
twice anyway; the checkpoint only saves reading it.

- **snapshot** (the default) reads every row and marks each person read with the run; at the
  end, the people this sync read before and not now are *removed*: ``ignore`` counts them,
  ``clear`` sends their attributes cleared (and detaches them from the sync), ``delete`` erases
  them as ``delete_user`` does (suppress, then delete).
- **incremental** reads rows updated after the last completed run's watermark less ``overlap``
  (a row that committed late with an older ``updated_at`` is still caught); the watermark is
  the newest ``updated_at`` read, held back before the oldest invalid row's so that row is
  read, and tried, again.

A row Customer.io would refuse (a limit, a value JSON cannot carry, an identifier that is not
one, the same key twice) is reported in the run (``RowError``) and not recorded, so the next
run tries it again; it never stops the other rows. A full outbox (``outbox_max_depth``) makes
the run wait for the workers, not fail. ``plan`` is the dry run: the same diff, counted and
sampled, nothing written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cio_relay.backoff import growing_delays
from cio_relay.clock import now_or
from cio_relay.errors import LimitExceeded, OutboxFullError, ValidationError
from cio_relay.operations import Operation
from cio_relay.sync.plans import erase_plan, present_attributes, sync_plan
from cio_relay.sync.repository import UserRepository
from cio_relay.sync.runs import RowError, SourceMark, SyncRun, next_run_id
from cio_relay.sync.sources import Source, SourceRow, Unconvertible, open_source
from cio_relay.sync.spec import SyncSpec
from cio_relay.sync.store import Change, Plan, UserState, person_key

__all__ = ["BulkSync", "SyncPlan"]

#: Rows a dry run keeps as examples of each outcome.
SAMPLES = 5
#: Waits (seconds) for room in a full outbox: the workers drain it in batches.
_FULL_FIRST_WAIT, _FULL_MOST_WAIT = 0.05, 5.0
#: A dry run's mark: it sorts after every run id (ULIDs: digits and capitals), so every person
#: of the sync is unseen by it (runs.SourceMark).
_DRY_RUN = "~"


@dataclass
class SyncPlan:
    """A dry run's answer: how many rows would be added, changed, unchanged, invalid, and how
    many people removed, with up to ``SAMPLES`` examples of each (the key and, for a change,
    the attributes it would send)."""

    name: str
    mode: str
    since: float | None
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("added", "changed", "unchanged", "invalid", "removed"), 0
        )
    )
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)

    def count(self, outcome: str, sample: dict[str, Any]) -> None:
        self.counts[outcome] += 1
        kept = self.samples.setdefault(outcome, [])
        if len(kept) < SAMPLES:
            kept.append(sample)


@dataclass
class _Batch:
    """One batch's outcomes, per person; rebuilt by each attempt of its transaction (a plan
    may run more than once)."""

    outcomes: dict[str, str] = field(default_factory=dict)
    errors: dict[str, RowError] = field(default_factory=dict)
    sent: dict[str, tuple[Operation, ...]] = field(default_factory=dict)
    #: Each row's updated-at, by person: an invalid row's holds the watermark back.
    times: dict[str, float] = field(default_factory=dict)

    def invalid(self, error: RowError) -> None:
        self.errors[error.person] = error
        self.outcomes[error.person] = "invalid"

    def attributes_sent(self, key: str) -> dict[str, Any]:
        return {k: v for op in self.sent.get(key, ()) for k, v in op.payload["attributes"].items()}

    def guard(self, key: str, plan: Plan) -> Plan:
        """``plan``, with its outcome recorded and a ``ValidationError`` (a limit the
        operation crosses) made a ``RowError`` instead of failing the batch."""

        def guarded(current: UserState | None) -> Change | None:
            try:
                change = plan(current)
            except ValidationError as exc:
                self.invalid(_row_error(key, exc))
                return None
            self.outcomes[key] = _outcome(current, change)
            if change is not None:
                self.sent[key] = change.operations
            return change

        return guarded


class BulkSync:
    """One sync of ``spec``'s source through ``users`` (module docstring)."""

    def __init__(
        self,
        users: UserRepository,
        spec: SyncSpec,
        source: Source | None = None,
        *,
        clock: Callable[[], float] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.users = users
        self.spec = spec
        self._source = source
        self._clock = clock or (lambda: now_or(None))
        self._stop = stop or threading.Event()
        self._previous_key: str | None = None
        self._emails_read: set[str] | None = None  # a run's, by email (_read_once)

    def __repr__(self) -> str:
        return f"BulkSync(name={self.spec.name!r}, mode={self.spec.mode!r})"

    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = open_source(self.spec)
        return self._source

    # --- running ----------------------------------------------------------------------------

    def run(self, on_progress: Callable[[SyncRun], None] | None = None) -> SyncRun:
        """Run (or resume) the sync to the end; its ``SyncRun``. ``on_progress`` hears the run
        after each committed batch. A failure (the source, the storage) is recorded in the run
        (``status="failed"``, ``error``) and raised; the next ``run`` resumes it."""
        progress = on_progress or (lambda run: None)
        run = self._resume_or_start()
        self._start_reading()
        try:
            for rows in self._batches(run):
                run = self._commit(run, rows)
                progress(run)
            if self.spec.mode == "snapshot":
                run = self._handle_removed(run, progress)
        except BaseException as exc:
            failed = replace(run, status="failed", error=_describe(exc), finished_at=self._now())
            self.users.store.save_run(failed)
            raise
        finally:
            self._close_source()
        done = replace(run, status="completed", finished_at=self._now())
        self.users.store.save_run(done)
        progress(done)
        return done

    def _resume_or_start(self) -> SyncRun:
        runs = self.users.store.runs(self.spec.name, limit=1)
        last = runs[0] if runs else None
        if last is not None and last.status != "completed" and last.mode == self.spec.mode:
            return replace(last, status="running", error=None, finished_at=None)
        run_id = next_run_id(None if last is None else last.run_id)
        run = SyncRun(run_id, self.spec.name, self.spec.mode, self._now())
        if self.spec.mode != "incremental":
            return run
        watermark = self._last_watermark()
        return replace(
            run,
            since=self._since(watermark),
            newest_read=watermark,  # carried: a run that reads nothing keeps it
            horizon=self.source.newest_updated_at(),
        )

    def _last_watermark(self) -> float | None:
        done = self.users.store.runs(self.spec.name, limit=1, status="completed")
        return done[0].watermark if done else None

    def _since(self, watermark: float | None) -> float | None:
        """Where an incremental run starts reading: the last completed run's watermark less
        the overlap (None: from the first row)."""
        if self.spec.mode != "incremental" or watermark is None:
            return None
        return max(0.0, watermark - self.spec.overlap)

    def _batches(self, run: SyncRun) -> Iterator[list[SourceRow]]:
        return self.source.batches(
            after=run.last_key, since=run.since, batch_size=self.spec.batch_size
        )

    def _commit(self, run: SyncRun, rows: list[SourceRow]) -> SyncRun:
        """One batch: its plans, states, operations and the new checkpoint in one commit."""
        now = self._now()
        batch = _Batch()
        plans = self._plans(rows, now, batch)
        mark = SourceMark(self.spec.name, run.run_id)
        result: list[SyncRun] = []

        def checkpoint() -> SyncRun:
            result[:] = [self._advanced(run, rows, batch)]
            return result[0]

        self._write(plans, mark, checkpoint)
        return result[0] if result else checkpoint()

    def _plans(self, rows: list[SourceRow], now: float, batch: _Batch) -> list[tuple[str, Plan]]:
        plans: list[tuple[str, Plan]] = []
        for row in rows:
            key, invalid_key = self._label(row)
            if row.updated_at is not None:
                batch.times[key] = row.updated_at
            try:
                if invalid_key is not None:
                    raise invalid_key
                self._read_once(key)
                plans.append((key, batch.guard(key, self._row_plan(key, row, now))))
            except ValidationError as exc:
                batch.invalid(_row_error(key, exc))
                if invalid_key is None:  # still in the source: marked read, never "removed"
                    plans.append((key, _no_change))
        return plans

    def _read_once(self, key: str) -> None:
        """``ValidationError`` for a person this read met before: the row before it (rows come
        in key order, so a repeated key is adjacent, batches or not), or, for emails, any row
        (two spellings of one email are one person to Customer.io, and need not be adjacent).
        A run resumed from its checkpoint knows only the rows read since."""
        repeated = key == self._previous_key or (
            self._emails_read is not None and key in self._emails_read
        )
        self._previous_key = key
        if self._emails_read is not None:
            self._emails_read.add(key)
        if repeated:
            raise ValidationError(self.spec.id_column, "the same person twice in the source")

    def _start_reading(self) -> None:
        self._previous_key = None
        self._emails_read = set() if self.spec.id_type == "email" else None

    def _label(self, row: SourceRow) -> tuple[str, ValidationError | None]:
        """The row's person: its store key; or, for an identifier that is not one, how to show
        it and why."""
        try:
            return _key(self.spec.id_type, row.key, self.spec.id_column), None
        except ValidationError as exc:
            return f"{self.spec.id_type}:{row.key!r}", exc

    def _row_plan(self, key: str, row: SourceRow, now: float) -> Plan:
        """The row's ``sync_user`` plan; ``ValidationError`` for a row that cannot be one."""
        try:
            wanted = present_attributes(row.attributes)
        except ValidationError:
            # An Unconvertible is refused as JSON; say why the source could not convert it.
            for column, value in row.attributes.items():
                if type(value) is Unconvertible:
                    raise ValidationError(f"attributes.{column}", value.reason) from None
            raise
        return sync_plan(self.users.build, key, wanted, now)

    def _advanced(self, run: SyncRun, rows: list[SourceRow], batch: _Batch) -> SyncRun:
        """``run`` after ``rows`` committed with ``batch``'s outcomes."""
        outcomes = list(batch.outcomes.values())
        invalid_times = [batch.times[k] for k in batch.errors if k in batch.times]
        advanced = replace(
            run,
            last_key=rows[-1].key,
            rows_read=run.rows_read + len(rows),
            added=run.added + outcomes.count("added"),
            changed=run.changed + outcomes.count("changed"),
            unchanged=run.unchanged + outcomes.count("unchanged"),
            operations=run.operations + sum(len(ops) for ops in batch.sent.values()),
            newest_read=_latest(run.newest_read, max(batch.times.values(), default=None)),
            oldest_invalid=_earliest(run.oldest_invalid, min(invalid_times, default=None)),
        )
        return advanced.with_errors(list(batch.errors.values()))

    # --- removed people (snapshot) ----------------------------------------------------------

    def _handle_removed(self, run: SyncRun, progress: Callable[[SyncRun], None]) -> SyncRun:
        mark = SourceMark(self.spec.name, run.run_id)
        if self.spec.removed == "ignore":
            return replace(run, removed=self._count_unseen(mark))
        while gone := self.users.store.unseen(mark, None, self.spec.batch_size):
            run = self._remove(run, gone)
            progress(run)
        return run

    def _remove(self, run: SyncRun, gone: list[UserState]) -> SyncRun:
        """Clear or erase ``gone`` (people the run did not read), detaching them from the sync,
        in one commit with the run's new counts."""
        now = self._now()
        plans = [(state.person_id, self._removal_plan(state.person_id, now)) for state in gone]
        ops: dict[str, int] = {}  # by person: a plan may run more than once

        def checkpoint() -> SyncRun:
            removed, sent = run.removed + len(gone), run.operations + sum(ops.values())
            return replace(run, removed=removed, operations=sent)

        def counted(key: str, plan: Plan) -> Plan:
            def count(current: UserState | None) -> Change | None:
                change = plan(current)
                ops[key] = 0 if change is None else len(change.operations)
                return change

            return count

        detach = SourceMark(None, None)
        self._write([(key, counted(key, plan)) for key, plan in plans], detach, checkpoint)
        return checkpoint()

    def _removal_plan(self, key: str, now: float) -> Plan:
        if self.spec.removed == "delete":
            return erase_plan(self.users.build, key)
        return sync_plan(self.users.build, key, present_attributes({}), now)

    def _count_unseen(self, mark: SourceMark) -> int:
        count, after = 0, None
        while page := self.users.store.unseen(mark, after, 10_000):
            count += len(page)
            after = page[-1].person_id
        return count

    # --- the dry run ------------------------------------------------------------------------

    def plan(self) -> SyncPlan:
        """What ``run`` would do now from the start (not resuming), nothing written."""
        since = self._since(self._last_watermark())
        answer = SyncPlan(self.spec.name, self.spec.mode, since)
        seen: set[str] = set()
        now = self._now()
        self._start_reading()
        try:
            for rows in self.source.batches(
                after=None, since=since, batch_size=self.spec.batch_size
            ):
                self._plan_batch(rows, now, answer, seen)
        finally:
            self._close_source()
        if self.spec.mode == "snapshot":
            self._plan_removed(answer, seen)
        return answer

    def _plan_batch(
        self, rows: list[SourceRow], now: float, answer: SyncPlan, seen: set[str]
    ) -> None:
        batch = _Batch()
        plans = self._plans(rows, now, batch)
        states = self.users.store.states([key for key, _ in plans])
        for key, plan in plans:
            plan(states.get(key))
        seen.update(batch.outcomes)
        for key, outcome in batch.outcomes.items():
            answer.count(outcome, {"person": key, "attributes": batch.attributes_sent(key)})
        answer.errors.extend(batch.errors.values())

    def _plan_removed(self, answer: SyncPlan, seen: set[str]) -> None:
        mark, after = SourceMark(self.spec.name, _DRY_RUN), None
        while page := self.users.store.unseen(mark, after, 10_000):
            for state in page:
                if state.person_id not in seen:
                    answer.count("removed", {"person": state.person_id, "attributes": {}})
            after = page[-1].person_id

    # --- plumbing ---------------------------------------------------------------------------

    def _write(
        self, plans: Sequence[tuple[str, Plan]], mark: SourceMark, checkpoint: Callable[[], SyncRun]
    ) -> list[Change | None]:
        """``apply_batch``, once the outbox has room: a full outbox is waited on (the workers
        drain it), with backoff, until ``stop`` is set."""
        for delay in growing_delays(_FULL_FIRST_WAIT, _FULL_MOST_WAIT):
            try:
                self.users.capacity_check()
                return self.users.store.apply_batch(plans, mark, checkpoint)
            except OutboxFullError:
                if self._stop.wait(delay):
                    raise
        raise AssertionError("growing_delays never ends")

    def _close_source(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    def _now(self) -> float:
        return self._clock()


def _key(id_type: str, value: Any, column: str) -> str:
    kind = type(value)
    if kind is not str and kind is not int:
        raise ValidationError(column, f"an identifier is a string or an integer, not {value!r}")
    return person_key(str(value) if id_type == "id" else {id_type: str(value)})


def _no_change(current: UserState | None) -> Change | None:
    return None


def _outcome(current: UserState | None, change: Change | None) -> str:
    if change is None:
        return "unchanged"
    return "added" if current is None else "changed"


def _row_error(person: str, exc: ValidationError) -> RowError:
    if isinstance(exc, LimitExceeded):
        return RowError(person, exc.field, str(exc), exc.limit, exc.size)
    return RowError(person, exc.field, str(exc))


def _latest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
