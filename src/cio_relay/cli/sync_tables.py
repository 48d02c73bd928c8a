"""The tables of ``cio-relay sync`` (cli/sync.py): a run's summary, its row errors, a plan's
counts and samples, and the runs of ``status``. Values from the source (keys, attributes,
messages) are printed through ``plain_text``, never as Rich markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table
from rich.text import Text

from cio_relay.plain_text import plain_text

if TYPE_CHECKING:
    from cio_relay.sync.bulk import SyncPlan
    from cio_relay.sync.runs import RowError, SyncRun
    from cio_relay.sync.spec import SyncSpec

__all__ = ["ERRORS_SHOWN", "errors_table", "one_line", "plan_tables", "run_summary", "runs_text"]

#: Row errors printed after a run or a plan (the run record keeps up to ERRORS_KEPT).
ERRORS_SHOWN = 10
_COUNTS = ("added", "changed", "unchanged", "invalid", "removed")
_CELL = 160


def run_summary(spec: SyncSpec, run: SyncRun, seconds: float) -> Table:
    """One run's outcome: counts, operations, checkpoint, watermark, duration."""
    from cio_relay.sync.sources import without_password

    title = Text.assemble(
        "sync ",
        plain_text(spec.name),
        f" ({run.mode}) from ",
        plain_text(without_password(spec.source)),
    )
    view = Table(title=title, box=box.SIMPLE_HEAD, show_header=False)
    view.add_column("", style="bold")
    view.add_column("", justify="right")
    status_style = {"completed": "green", "failed": "red"}.get(run.status, "yellow")
    view.add_row("status", Text(run.status, style=status_style))
    view.add_row("rows read", f"{run.rows_read:,}")
    for count in _COUNTS:
        view.add_row(count, f"{getattr(run, count):,}")
    view.add_row("operations enqueued", f"{run.operations:,}")
    view.add_row("checkpoint (last key)", _cell(run.last_key))
    view.add_row("watermark", _when(run.watermark))
    view.add_row("duration", f"{seconds:.1f} s")
    return view


def errors_table(errors: Sequence[RowError], total: int) -> Table:
    """The first row errors (person, field, limit, size, message)."""
    shown = errors[:ERRORS_SHOWN]
    title = f"row errors: {len(shown)} of {total:,} (tried again next run)"
    view = Table(title=title, box=box.SIMPLE_HEAD)
    for header in ("person", "field", "limit", "size", "message"):
        view.add_column(header, justify="right" if header in ("limit", "size") else "left")
    for error in shown:
        view.add_row(
            _cell(error.person),
            _cell(error.field),
            "" if error.limit is None else f"{error.limit:,}",
            "" if error.size is None else f"{error.size:,}",
            _cell(error.message),
        )
    return view


def plan_tables(plan: SyncPlan) -> list[Table]:
    """A dry run: the counts, a few samples of each outcome (what a change would send), and
    the row errors."""
    counts = Table(title=Text.assemble("plan of sync ", plain_text(plan.name), f" ({plan.mode})"))
    for outcome in _COUNTS:
        counts.add_column(outcome, justify="right")
    counts.add_row(*(f"{plan.counts[outcome]:,}" for outcome in _COUNTS))
    samples = Table(title="samples", box=box.SIMPLE_HEAD)
    for header in ("outcome", "person", "attributes it would send"):
        samples.add_column(header)
    for outcome in _COUNTS:
        for sample in plan.samples.get(outcome, ()):
            samples.add_row(outcome, _cell(sample["person"]), _attributes(sample["attributes"]))
    tables = [counts, samples]
    if plan.errors:
        tables.append(errors_table(plan.errors, plan.counts["invalid"]))
    return tables


def runs_text(runs: Sequence[SyncRun]) -> Text:
    """Runs, newest first, a few lines each (a table of a dozen columns would not fit a
    terminal): when and how it ended, the counts, the checkpoint and watermark, the error."""
    text = Text()
    for run in runs:
        style = {"completed": "green", "failed": "red"}.get(run.status, "yellow")
        ended = f" → {_when(run.finished_at)}" if run.finished_at is not None else ""
        text.append_text(plain_text(run.name))
        text.append(f"  {_when(run.started_at)}{ended} UTC  ({run.mode})  ")
        text.append(run.status, style=style)
        counts = " · ".join(f"{count} {getattr(run, count):,}" for count in _COUNTS)
        text.append(f"\n  read {run.rows_read:,} · {counts}")
        text.append(f"\n  operations {run.operations:,} · checkpoint (last key) ")
        text.append_text(_cell("—" if run.last_key is None else run.last_key))
        text.append(f" · watermark {_when(run.watermark) or '—'}")
        if run.error:
            text.append("\n  error: ", style="red")
            text.append_text(_cell(one_line(run.error)))
        text.append("\n")
    return text


def one_line(message: str) -> str:
    return " ".join(message.split())


def _cell(value: Any) -> Text:
    text = "" if value is None else str(value)
    return plain_text(text if len(text) <= _CELL else text[: _CELL - 1] + "…")


def _attributes(attributes: dict[str, Any]) -> Text:
    from cio_relay.kept_json import dumps

    return _cell(dumps(attributes).decode() if attributes else "—")


def _when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
