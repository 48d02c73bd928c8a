"""``cio-relay lake export bigquery``: one load pass of the lake into a BigQuery table.

Parses and calls ``lake.bigquery.open_loader(...).run_pass()``; prints one row per day (loaded,
unchanged or failed, with the reason) and exits 1 if a day failed, so a cron job or a pipeline
notices. The running service does the same every ``CIO_RELAY_BIGQUERY_INTERVAL`` seconds when
``CIO_RELAY_BIGQUERY_TABLE`` is set; both share the load state beside the lake.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cio_relay.plain_text import plain_text

if TYPE_CHECKING:
    from cio_relay.lake.bigquery import DayResult

__all__ = ["export_app", "results_table"]

export_app = typer.Typer(help="Copy the lake into a warehouse.", no_args_is_help=True)


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"a day is YYYY-MM-DD, got {value!r}") from None


@export_app.command("bigquery")
def export_bigquery(
    table: str | None = typer.Option(
        None, "--table", help="project.dataset.table (default: CIO_RELAY_BIGQUERY_TABLE)."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only days from this one on (YYYY-MM-DD, UTC)."
    ),
    lake: str | None = typer.Option(
        None, "--lake", help="Lake directory (default: CIO_RELAY_LAKE or data dir)."
    ),
    emulator: str | None = typer.Option(
        None,
        "--emulator",
        help="URL of a BigQuery emulator (default: CIO_RELAY_BIGQUERY_EMULATOR).",
    ),
) -> None:
    """Load each day of the lake that changed since its last load, as one job per day."""
    from cio_relay.config import Settings
    from cio_relay.lake.bigquery import open_loader

    first_day = _day(since)
    settings = Settings()
    target = table or settings.bigquery_table
    if not target:
        raise typer.BadParameter("name the table: --table project.dataset.table")
    loader = open_loader(
        lake or settings.lake_url, target, emulator=emulator or settings.bigquery_emulator
    )
    try:
        results = loader.run_pass(since=first_day)
    finally:
        loader.close()
    Console().print(results_table(results, target))
    if any(result.outcome == "failed" for result in results):
        raise typer.Exit(1)


def results_table(results: Sequence[DayResult], table: str) -> Table:
    """One row per day looked at."""
    loaded = sum(result.outcome == "loaded" for result in results)
    caption = f"{loaded} of {len(results)} days loaded into {table}"
    view = Table(caption=Text(caption), box=box.SIMPLE_HEAD)
    for header in ("day", "result", "rows", "seconds", "reason", "error"):
        view.add_column(header, justify="right" if header in ("rows", "seconds") else "left")
    for result in results:
        view.add_row(
            result.day.isoformat(),
            result.outcome,
            str(result.rows) if result.outcome == "loaded" else "",
            f"{result.seconds:.1f}" if result.outcome != "unchanged" else "",
            result.reason or "",
            plain_text(result.error or ""),
        )
    return view
