"""The ``cio-relay`` command: a thin Typer layer that parses and calls library functions.

Each subsystem's commands sit in their own block below; no logic lives here. Values that come
from data (op ids, error messages) are printed through ``plain_text``, never as Rich markup.
"""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from cio_relay.cli.lake_export import export_app
from cio_relay.cli.sync import sync_app
from cio_relay.plain_text import plain_text

app = typer.Typer(
    name="cio-relay",
    help="Self-hosted Customer.io integration: durable outbox, workers, webhooks, data lake.",
    no_args_is_help=True,
    add_completion=False,
)


def main() -> None:
    from cio_relay.errors import ConfigError

    try:
        app()
    except ConfigError as exc:  # settings that cannot work: one clear line, not a traceback
        message = Text.assemble(("configuration error: ", "red"), plain_text(str(exc)))
        Console(stderr=True).print(message)
        raise SystemExit(2) from None


# --- emulator -------------------------------------------------------------------------------

_HIDDEN = "never printed"


def _is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; a host name may resolve anywhere: False."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _warn_if_exposed(host: str) -> None:
    if not _is_loopback(host):
        typer.echo(
            f"WARNING: the emulator binds {host}, reachable from other machines. Its /_emulator/ "
            "API (every stored person and message, fault injection, reset) needs no "
            "credentials. Bind 127.0.0.1 unless this is a trusted test network.",
            err=True,
        )


@app.command()
def emulator(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (a test tool: keep loopback)."),
    port: int = typer.Option(8089, help="Port to listen on (0: a free port, announced)."),
    site_id: str = typer.Option(
        "emulator-site", envvar="CUSTOMERIO_SITE_ID", help="Site id clients must present."
    ),
    track_api_key: str = typer.Option(
        "emulator-track-key",
        envvar="CUSTOMERIO_TRACK_API_KEY",
        help=f"Track API key (Basic auth password); {_HIDDEN}.",
        show_default=False,
    ),
    app_api_key: str = typer.Option(
        "emulator-app-key",
        envvar="CUSTOMERIO_APP_API_KEY",
        help=f"App API key (Bearer token); {_HIDDEN}.",
        show_default=False,
    ),
    region: str = typer.Option(
        "us", envvar="CUSTOMERIO_REGION", help="Region of the emulated account: us or eu."
    ),
    webhook_url: str | None = typer.Option(
        None, help="Where to POST signed reporting webhooks after transactional sends."
    ),
    webhook_signing_key: str | None = typer.Option(
        None,
        envvar="CUSTOMERIO_WEBHOOK_SIGNING_KEY",
        help=f"Key that signs the webhooks (X-CIO-Signature); {_HIDDEN}.",
        show_default=False,
    ),
    tls_cert: str | None = typer.Option(None, help="TLS certificate chain (PEM) to serve https."),
    tls_key: str | None = typer.Option(None, help="TLS private key (PEM) for --tls-cert."),
) -> None:
    """Run the Customer.io emulator in the foreground (Track v1/v2, App API, /_emulator/).

    A test tool: /_emulator/ (inspection, faults, reset) needs no credentials, so it binds
    127.0.0.1 unless told otherwise. With several comma-separated signing keys in the
    environment (rotation), the first one signs.
    """
    from cio_relay.emulator import EmulatorConfig, serve_forever

    if region not in ("us", "eu"):
        raise typer.BadParameter("must be us or eu", param_hint="--region")
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("give both --tls-cert and --tls-key", param_hint="--tls-cert")
    if webhook_url and not webhook_signing_key:
        raise typer.BadParameter("webhooks are signed: give --webhook-signing-key too")
    signing_key = webhook_signing_key.split(",")[0].strip() if webhook_signing_key else None
    _warn_if_exposed(host)
    config = EmulatorConfig(
        site_id=site_id,
        track_api_key=track_api_key,
        app_api_key=app_api_key,
        region="eu" if region == "eu" else "us",
        webhook_url=webhook_url,
        webhook_signing_key=signing_key,
    )

    def announce(url: str) -> None:
        typer.echo(
            f"Customer.io emulator ({region}) listening on {url} (site id {site_id}); "
            f"inspect at {url}/_emulator/stats",
            err=True,
        )

    serve_forever(
        config,
        host=host,
        port=port,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        on_listening=announce,
    )


# --- relay: run, worker, dlq, demo ----------------------------------------------------------

dlq_app = typer.Typer(help="Inspect, replay and purge the dead-letter queue.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(sync_app, name="sync")

_KIND = typer.Option(None, "--kind", help="Only this operation kind (track, send_email ...).")
_REASON = typer.Option(
    None, "--reason", help="Only this reason: permanent, batch_item, ambiguous, max_attempts ..."
)
_OLDER = typer.Option(None, "--older-than", help="Only dead letters older than this many seconds.")


def _filter(
    op_ids: list[str] | None, kind: str | None, reason: str | None, older_than: float | None
) -> Any:
    from cio_relay.outbox.base import DeadLetterFilter

    for op_id in op_ids or ():
        # Bytes that are not UTF-8 arrive as lone surrogates, which no outbox can look up.
        try:
            op_id.encode("utf-8")
        except UnicodeEncodeError:
            raise typer.BadParameter("must be UTF-8 text", param_hint="OP_ID") from None
    return DeadLetterFilter(tuple(op_ids or ()), kind, reason, older_than)


def _outbox() -> contextlib.closing[Any]:
    """The configured outbox, closed when the command is done with it."""
    from cio_relay.config import Settings
    from cio_relay.outbox.factory import open_outbox

    settings = Settings()
    return contextlib.closing(
        open_outbox(settings.outbox_url, durability=settings.outbox_durability)
    )


def _chosen(
    op_ids: list[str] | None,
    kind: str | None,
    reason: str | None,
    older_than: float | None,
    all_: bool,
) -> Any:
    """The dead letters a replay or purge names; everything only with ``--all``."""
    where = _filter(op_ids, kind, reason, older_than)
    if where == _filter(None, None, None, None) and not all_:
        raise typer.BadParameter("name op ids or a filter, or pass --all")
    return where


@app.command()
def run(
    host: str | None = typer.Option(None, help="Bind address (default CIO_RELAY_HOST, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default CIO_RELAY_PORT, 8080; 0: any free)."),
) -> None:
    """The main job: API, webhooks, dashboard, metrics and workers in one process."""
    from cio_relay.server.runner import run_service

    run_service(host=host, port=port)


@app.command()
def worker() -> None:
    """Deliver the outbox until SIGTERM/SIGINT, then shut down gracefully.

    Waits for an outbox that cannot be reached yet and rides out one that fails while it runs;
    exits early (status 2) only when the configuration cannot work.
    """
    import pydantic

    from cio_relay.config import Settings
    from cio_relay.delivery.worker import run_worker_process
    from cio_relay.errors import ConfigError
    from cio_relay.observability.logs import configure_logging
    from cio_relay.server.runner import tune_gc

    try:
        settings = Settings()
    except pydantic.ValidationError as exc:
        # Without the values given: a malformed one may be a secret.
        problems = [
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        ]
        raise ConfigError("; ".join(problems)) from None
    configure_logging(settings.log_level, secrets=settings.secret_values())
    tune_gc()  # a long-running process: less CPU per delivered event
    run_worker_process(settings)


@app.command()
def demo(
    people: int = typer.Option(2_000, min=1, help="People to identify."),
    events: int = typer.Option(20_000, min=0, help="Events to track."),
    emails: int = typer.Option(
        200, min=0, help="Transactional emails (one in ten bounces, one in 25 reports spam)."
    ),
    data_dir: Path | None = typer.Option(
        None,
        help="Keep the outbox, webhook inbox and lake in this new or empty directory "
        "(default: a temporary one, removed at the end).",
    ),
    seed: int = typer.Option(42, help="Seed of the random workload."),
) -> None:
    """A one-shot walkthrough against the emulator, ending with a summary and the funnel."""
    from cio_relay.cli.demo import DemoWorkload, run_demo

    if data_dir is not None and data_dir.exists() and any(data_dir.iterdir()):
        raise typer.BadParameter("must be a new or empty directory", param_hint="--data-dir")
    run_demo(
        Console(),
        DemoWorkload(people=people, events=events, emails=emails),
        data_dir=data_dir,
        seed=seed,
    )


@dlq_app.command("list")
def dlq_list(
    kind: str | None = _KIND,
    reason: str | None = _REASON,
    older_than: float | None = _OLDER,
    limit: int = typer.Option(50, help="Rows per page."),
    offset: int = typer.Option(0, help="Rows to skip."),
) -> None:
    """Dead letters, newest first."""
    from cio_relay.cli.dead_letters import dead_letter_table

    where = _filter(None, kind, reason, older_than)
    with _outbox() as outbox:
        rows = outbox.list_dead(where, limit=limit, offset=offset)
        Console().print(dead_letter_table(rows, total=outbox.count_dead(where), offset=offset))


@dlq_app.command("show")
def dlq_show(op_id: str = typer.Argument(..., help="The op id of the dead letter.")) -> None:
    """One dead letter in full: the operation, the reason and the last error."""
    from cio_relay.cli.dead_letters import dead_letter_detail

    where = _filter([op_id], None, None, None)
    with _outbox() as outbox:
        rows = outbox.list_dead(where, limit=1)
    if not rows:
        Console(stderr=True).print(Text.assemble("no dead letter with op id ", plain_text(op_id)))
        raise typer.Exit(1)
    Console().print(dead_letter_detail(rows[0]))


@dlq_app.command("replay")
def dlq_replay(
    op_ids: list[str] = typer.Argument(None, help="Op ids to replay (default: by filter)."),
    kind: str | None = _KIND,
    reason: str | None = _REASON,
    older_than: float | None = _OLDER,
    all_: bool = typer.Option(False, "--all", help="Replay every dead letter."),
) -> None:
    """Put dead letters back in the outbox with their op ids unchanged."""
    where = _chosen(op_ids, kind, reason, older_than, all_)
    with _outbox() as outbox:
        Console().print(f"replayed {outbox.replay(where)} dead letters")


@dlq_app.command("purge")
def dlq_purge(
    op_ids: list[str] = typer.Argument(None, help="Op ids to purge (default: by filter)."),
    kind: str | None = _KIND,
    reason: str | None = _REASON,
    older_than: float | None = _OLDER,
    all_: bool = typer.Option(False, "--all", help="Purge every dead letter."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Delete dead letters for good."""
    where = _chosen(op_ids, kind, reason, older_than, all_)
    with _outbox() as outbox:
        count = outbox.count_dead(where)
        if not yes and not typer.confirm(f"Purge {count} dead letters for good?"):
            raise typer.Exit(1)
        Console().print(f"purged {outbox.purge(where)} dead letters")


# --- configuration --------------------------------------------------------------------------

config_app = typer.Typer(help="Check the configuration before deploying it.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    cloud_run: bool | None = typer.Option(
        None,
        "--cloud-run/--not-cloud-run",
        help="Check as for Cloud Run or not (default: Cloud Run when K_SERVICE or "
        "CLOUD_RUN_JOB is set, as Cloud Run sets them).",
        show_default=False,
    ),
    confirm_suppress: bool = typer.Option(
        False, "--confirm-suppress", help="Accept a suppress bounce or spam policy."
    ),
) -> None:
    """Print the effective settings (secrets masked); refuse dangerous combinations (status 1)."""
    from cio_relay.cli.config_check import check_configuration

    def echo(text: str, to_stderr: bool) -> None:
        typer.echo(text, err=to_stderr)

    code = check_configuration(echo, cloud_run=cloud_run, confirm_suppress=confirm_suppress)
    raise typer.Exit(code)


# --- webhooks and lake ----------------------------------------------------------------------

lake_app = typer.Typer(help="Query the delivery-event data lake.", no_args_is_help=True)
app.add_typer(lake_app, name="lake")
lake_app.add_typer(export_app, name="export")
webhooks_app = typer.Typer(
    help="Inspect and retry parked webhooks; list quarantined payloads.", no_args_is_help=True
)
app.add_typer(webhooks_app, name="webhooks")

_LAKE = typer.Option(None, "--lake", help="Lake directory (default: CIO_RELAY_LAKE or data dir).")
_INBOX = typer.Option(None, "--inbox", help="Webhook inbox file (default: <data dir>/webhooks.db).")


_FUNNEL_KINDS = ("campaign", "broadcast", "transactional")


def _funnel_kind(value: str) -> str:
    if value not in _FUNNEL_KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(_FUNNEL_KINDS)}, got {value!r}")
    return value


def _open_lake(directory: str | None) -> contextlib.closing[Any]:
    from cio_relay.config import Settings
    from cio_relay.lake.factory import open_lake

    return contextlib.closing(open_lake(directory or Settings().lake_url))


def _open_inbox(path: str | None) -> contextlib.closing[Any]:
    from cio_relay.config import Settings
    from cio_relay.webhooks.sqlite_inbox import SQLiteInbox

    return contextlib.closing(SQLiteInbox(path or Settings().webhook_inbox_path))


@lake_app.command("query")
def lake_query(
    sql: str = typer.Argument(..., help="DuckDB SQL over the view `events`."),
    lake: str | None = _LAKE,
    limit: int = typer.Option(100, help="Rows to print."),
) -> None:
    """Run SQL against the lake and print the rows."""
    import duckdb

    from cio_relay.cli.lake_tables import query_table

    with _open_lake(lake) as opened:
        try:
            result = opened.query(sql)
        except duckdb.Error as exc:
            failure = plain_text(str(exc), multiline=True)  # quotes the SQL and the data
            Console(stderr=True).print(Text.assemble(("query failed: ", "red"), failure))
            raise typer.Exit(1) from None
    Console().print(query_table(result, limit=limit))


@lake_app.command("funnel")
def lake_funnel(
    by: str = typer.Option(
        "campaign", "--by", callback=_funnel_kind, help="campaign, broadcast or transactional."
    ),
    days: int = typer.Option(30, "--days", min=1, help="Days back from today (UTC)."),
    channel: str | None = typer.Option(None, "--channel", help="Only email, push, sms ..."),
    lake: str | None = _LAKE,
) -> None:
    """Sent, delivered, opened, clicked, bounced, spammed, unsubscribed per message per day."""
    from cio_relay.cli.lake_tables import funnel_table

    with _open_lake(lake) as opened:
        rows = opened.funnel(by=by, days=days, channel=channel)
    Console().print(funnel_table(rows, by=by))


@lake_app.command("compact")
def lake_compact(lake: str | None = _LAKE) -> None:
    """Merge each day's small files into one and drop duplicate event ids."""
    with _open_lake(lake) as opened:
        report = opened.compact()
    Console().print(
        f"compacted {report.files_before} files into {report.files_after} "
        f"({report.rows} rows, {report.duplicates_removed} duplicates removed)"
    )


@webhooks_app.command("parked")
def webhooks_parked(
    inbox: str | None = _INBOX,
    limit: int = typer.Option(50, help="Rows per page."),
    offset: int = typer.Option(0, help="Rows to skip."),
) -> None:
    """Webhook events whose handlers failed too often, with their last error."""
    from cio_relay.cli.webhook_tables import parked_table

    with _open_inbox(inbox) as opened:
        rows = opened.list_parked(limit=limit, offset=offset)
        Console().print(parked_table(rows, total=opened.counts().parked))


@webhooks_app.command("retry")
def webhooks_retry(
    event_ids: list[str] = typer.Argument(None, help="Event ids to retry."),
    all_: bool = typer.Option(False, "--all", help="Retry every parked event."),
    inbox: str | None = _INBOX,
) -> None:
    """Make parked events pending again; the running service handles them next."""
    if not event_ids and not all_:
        raise typer.BadParameter("name event ids, or pass --all")
    with _open_inbox(inbox) as opened:
        Console().print(f"{opened.retry_parked(event_ids or ())} parked events are pending again")


@webhooks_app.command("quarantined")
def webhooks_quarantined(
    inbox: str | None = _INBOX,
    limit: int = typer.Option(50, help="Rows per page."),
    offset: int = typer.Option(0, help="Rows to skip."),
) -> None:
    """Authentic payloads that did not parse as events (acknowledged, kept for inspection)."""
    from cio_relay.cli.webhook_tables import quarantine_table

    with _open_inbox(inbox) as opened:
        items = opened.list_quarantined(limit=limit, offset=offset)
        Console().print(quarantine_table(items, total=opened.counts().quarantined))
