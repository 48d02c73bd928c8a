"""``cio-relay sync run|plan|status|reset``: bulk syncs from the command line (sync/bulk.py).

A sync is named from the syncs file (``CIO_RELAY_SYNCS`` or ``--syncs FILE``: ``[[sync]]``
tables, sync/syncs_file.py), ``cio-relay sync run users``, or described ad hoc with flags named
after ``SyncSpec``'s fields (``--source``, ``--table``/``--query``, ``--id-column`` ...): one
model behind both. ``run`` only enqueues: ``cio-relay run`` or ``cio-relay worker`` delivers.

Everything a user may get wrong (a syncs file, a source URL, an outbox that cannot hold the
sync state) is one line on stderr and exit status 2, never a traceback and never a password
(sources describe themselves without it); an outbox that cannot be reached now is one line
and exit status 1. A run that fails is recorded with its checkpoint, summarised, and exits 1;
the next ``run`` resumes it. The tables are in sync_tables.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from cio_relay.cli.sync_tables import errors_table, one_line, plan_tables, run_summary, runs_text
from cio_relay.plain_text import plain_text

if TYPE_CHECKING:
    from cio_relay.config import Settings
    from cio_relay.sync import UserRepository
    from cio_relay.sync.runs import SyncRun
    from cio_relay.sync.spec import SyncSpec

__all__ = ["sync_app"]

sync_app = typer.Typer(
    help="Bulk sync people from a database or file (PostgreSQL, SQLite, CSV, Parquet).",
    no_args_is_help=True,
)


_NAME = typer.Argument(None, help="A sync of the syncs file (or describe one with --source).")
_SYNCS = typer.Option(None, "--syncs", help="The syncs file (default: CIO_RELAY_SYNCS).")
_SOURCE = typer.Option(
    None, "--source", help="postgresql://..., sqlite:///app.db, people.csv, people.parquet."
)
_TABLE = typer.Option(None, "--table", help="The table whose rows are people.")
_QUERY = typer.Option(None, "--query", help="Or a query whose rows are people.")
_ID_COLUMN = typer.Option(None, "--id-column", help="The identifier column (default: id).")
_ID_TYPE = typer.Option(None, "--id-type", help="id, email or cio_id (default: id).")
_UPDATED = typer.Option(None, "--updated-at-column", help="Updated-at column (incremental).")
_MODE = typer.Option(None, "--mode", help="snapshot (default) or incremental.")
_REMOVED = typer.Option(None, "--removed", help="Gone rows: ignore (default), clear or delete.")
_OVERLAP = typer.Option(None, "--overlap", help="Seconds read again before the watermark.")
_BATCH = typer.Option(None, "--batch-size", help="Rows per committed batch (default: 1000).")
_AD_HOC_NAME = typer.Option(None, "--name", help="The ad hoc sync's name (default: default).")


class _Refused(Exception):
    """A setting or an argument that cannot work: one line, exit status 2."""


class _Unreachable(Exception):
    """The outbox (where the sync state lives) cannot be opened now: one line, exit status 1."""


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """Configuration problems as one red line on stderr and exit status 2."""
    import pydantic

    from cio_relay.errors import ConfigError

    try:
        yield
    except (ConfigError, _Refused) as exc:
        _fail(str(exc))
    except pydantic.ValidationError as exc:  # from Settings(): without the values (secrets)
        problems = [
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        ]
        _fail("; ".join(problems))
    except _Unreachable as exc:
        Console(stderr=True).print(Text.assemble(("error: ", "red"), plain_text(str(exc))))
        raise typer.Exit(1) from None


def _fail(message: str) -> None:
    line = Text.assemble(("configuration error: ", "red"), plain_text(message))
    Console(stderr=True).print(line)
    raise typer.Exit(2)


def _settings() -> Settings:
    from cio_relay.config import Settings

    return Settings()


@contextlib.contextmanager
def _repository(settings: Settings) -> Iterator[UserRepository]:
    """The user repository beside the configured outbox, closed afterwards."""
    from cio_relay.errors import ConfigError
    from cio_relay.outbox.factory import open_outbox
    from cio_relay.relay import Relay
    from cio_relay.sync import UserRepository
    from cio_relay.sync.sources import without_password

    try:
        outbox = open_outbox(settings.outbox_url, durability=settings.outbox_durability)
    except ConfigError:
        raise
    except Exception as exc:  # Redis down, a disk error: say which outbox and why, briefly
        where = without_password(settings.outbox_url)
        reason = one_line(f"{type(exc).__name__}: {exc}")
        raise _Unreachable(f"the outbox {where} cannot be opened ({reason})") from None
    try:
        yield UserRepository(Relay(settings, outbox=outbox))
    finally:
        outbox.close()


def _chosen_spec(
    settings: Settings, name: str | None, syncs: Path | None, flags: dict[str, Any]
) -> SyncSpec:
    """The sync named in the syncs file, or the ad hoc one the flags describe."""
    from cio_relay.sync.syncs_file import spec_from_fields, sync_named

    given = {field: value for field, value in flags.items() if value is not None}
    if "source" in given:
        if name is not None:
            raise _Refused(f"name a sync of the syncs file ({name}) or give --source, not both")
        return spec_from_fields(given, "sync options")
    if given:
        named = ", ".join("--" + field.replace("_", "-") for field in given)
        raise _Refused(f"{named} describe an ad hoc sync: give --source too")
    if name is None:
        raise _Refused("name a sync of the syncs file, or describe one with --source ...")
    path = syncs or settings.syncs
    if path is None:
        raise _Refused(f"no syncs file to find {name!r} in: set CIO_RELAY_SYNCS or pass --syncs")
    return sync_named(path, name)


def _flags(**flags: Any) -> dict[str, Any]:
    return flags


# --- commands -------------------------------------------------------------------------------


@sync_app.command("run")
def sync_run(
    name: str | None = _NAME,
    syncs: Path | None = _SYNCS,
    source: str | None = _SOURCE,
    table: str | None = _TABLE,
    query: str | None = _QUERY,
    id_column: str | None = _ID_COLUMN,
    id_type: str | None = _ID_TYPE,
    updated_at_column: str | None = _UPDATED,
    mode: str | None = _MODE,
    removed: str | None = _REMOVED,
    overlap: float | None = _OVERLAP,
    batch_size: int | None = _BATCH,
    ad_hoc_name: str | None = _AD_HOC_NAME,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only plan: the same as `sync plan`."),
) -> None:
    """Run (or resume) a sync: enqueue what changed; `cio-relay run`/`worker` delivers it."""
    flags = _flags(
        source=source,
        table=table,
        query=query,
        id_column=id_column,
        id_type=id_type,
        updated_at_column=updated_at_column,
        mode=mode,
        removed=removed,
        overlap=overlap,
        batch_size=batch_size,
        name=ad_hoc_name,
    )
    if dry_run:
        _plan(name, syncs, flags)
        return
    with contextlib.ExitStack() as opened, _one_line_errors():
        settings = _settings()
        spec = _chosen_spec(settings, name, syncs, flags)
        users = opened.enter_context(_repository(settings))
        run, seconds, failure = _run_with_progress(users, spec)
    console = Console()
    console.print(run_summary(spec, run, seconds))
    if run.errors:
        console.print(errors_table(run.errors, run.invalid))
    if failure is not None:
        message = Text.assemble(("sync failed: ", "red"), plain_text(one_line(failure)))
        message.append(f"; `cio-relay sync run {spec.name}` resumes from its checkpoint")
        Console(stderr=True).print(message)
        raise typer.Exit(1)
    console.print(
        f"{run.operations:,} operations enqueued; `cio-relay run` or `cio-relay worker` "
        "delivers them to Customer.io.",
        highlight=False,
    )


def _run_with_progress(users: UserRepository, spec: SyncSpec) -> tuple[SyncRun, float, str | None]:
    """The run's final record, this command's seconds, and why it failed (None: it did not)."""
    from cio_relay.errors import ConfigError
    from cio_relay.sync.bulk import BulkSync

    started = time.monotonic()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} rows read"),
        TimeElapsedColumn(),
    )
    failure = None
    terminal = Console(stderr=True)
    # Only on a terminal: in a log (cron, CI) the summary says it all.
    shown = Progress(*columns, console=terminal, transient=True, disable=not terminal.is_terminal)
    with shown as progress:
        task = progress.add_task(f"sync {spec.name}", total=None)

        def on_progress(run: SyncRun) -> None:
            progress.update(task, completed=run.rows_read)

        try:
            run = BulkSync(users, spec).run(on_progress=on_progress)
        except ConfigError:
            raise  # a source that cannot be opened as given: one line (the run is recorded)
        except (Exception, KeyboardInterrupt) as exc:
            failure = f"{type(exc).__name__}: {exc}"
            latest = users.store.runs(spec.name, limit=1)
            if not latest:  # nothing was even recorded: the store itself failed
                raise
            run = latest[0]
    return run, time.monotonic() - started, failure


@sync_app.command("plan")
def sync_plan(
    name: str | None = _NAME,
    syncs: Path | None = _SYNCS,
    source: str | None = _SOURCE,
    table: str | None = _TABLE,
    query: str | None = _QUERY,
    id_column: str | None = _ID_COLUMN,
    id_type: str | None = _ID_TYPE,
    updated_at_column: str | None = _UPDATED,
    mode: str | None = _MODE,
    removed: str | None = _REMOVED,
    overlap: float | None = _OVERLAP,
    batch_size: int | None = _BATCH,
    ad_hoc_name: str | None = _AD_HOC_NAME,
) -> None:
    """What a run would do now (counts, samples, row errors), nothing enqueued."""
    flags = _flags(
        source=source,
        table=table,
        query=query,
        id_column=id_column,
        id_type=id_type,
        updated_at_column=updated_at_column,
        mode=mode,
        removed=removed,
        overlap=overlap,
        batch_size=batch_size,
        name=ad_hoc_name,
    )
    _plan(name, syncs, flags)


def _plan(name: str | None, syncs: Path | None, flags: dict[str, Any]) -> None:
    from cio_relay.sync.bulk import BulkSync

    with _one_line_errors():
        settings = _settings()
        spec = _chosen_spec(settings, name, syncs, flags)
        with _repository(settings) as users:
            plan = BulkSync(users, spec).plan()
    console = Console()
    for table in plan_tables(plan):
        console.print(table)
    console.print("Dry run: nothing was enqueued.", highlight=False)


@sync_app.command("status")
def sync_status(
    name: str | None = typer.Argument(None, help="One sync (default: every sync)."),
    limit: int = typer.Option(10, "--limit", min=1, help="Runs to show, newest first."),
) -> None:
    """The last runs: status, counts, checkpoint (last key), watermark, error."""
    with _one_line_errors(), _repository(_settings()) as users:
        runs = users.store.runs(name, limit=limit)
    if not runs:
        Console().print(f"no runs of {name!r} yet" if name else "no sync has run yet")
        return
    Console().print(runs_text(runs), end="")


@sync_app.command("reset")
def sync_reset(
    name: str = typer.Argument(..., help="The sync whose runs to forget."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Forget a sync's runs (its checkpoint and watermark): the next run starts over.

    What was sent stays known: the next run still sends only what differs from it.
    """
    with _one_line_errors(), _repository(_settings()) as users:
        count = len(users.store.runs(name, limit=1_000_000))
        question = f"Forget the {count} runs of {name!r} (checkpoint and watermark)?"
        if not yes and not typer.confirm(question):
            raise typer.Exit(1)
        forgotten = users.store.forget_runs(name)
    Console().print(
        Text.assemble(
            f"forgot {forgotten} runs of ", plain_text(name), "; the next run starts over"
        )
    )
