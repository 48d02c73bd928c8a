"""Payload text in the operator CLI is shown literally: never Rich markup, never escape codes.

Regressions of issue 11: a person id ``cli[/oops]`` made ``dlq list`` abort with
``MarkupError``; an attribute ``[link=...]click me[/link]`` became a hidden hyperlink in ``dlq
show``; a webhook subject ``Your order [/oops] shipped`` made ``lake query`` abort; raw ESC
sequences reached the terminal from table cells.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from cio_relay import operations as ops
from cio_relay.cli import app
from cio_relay.lake.parquet import ParquetLake
from cio_relay.outbox.base import DeadReason
from cio_relay.outbox.factory import open_outbox
from cio_relay.webhooks.events import parse_event
from cio_relay.webhooks.sqlite_inbox import SQLiteInbox
from tests.lake.helpers import row
from tests.webhooks.helpers import payload

LINK = "[link=https://evil.example]click me[/link]"
CLEAR_SCREEN = "\x1b[2J\x1b[H"


def _invoke(*argv: str, **env: str) -> Result:
    result = CliRunner(env={"COLUMNS": "250", **env}).invoke(app, list(argv))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output  # escape codes from data never reach the terminal
    return result


def _dead_letter(tmp_path: Path, person: str, detail: str, attributes: dict[str, str]) -> str:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    outbox = open_outbox(url)
    try:
        op = ops.identify(person, attributes)
        outbox.enqueue([op])
        [lease] = outbox.lease(1, 30.0)
        outbox.dead_letter(lease, DeadReason.PERMANENT, detail)
    finally:
        outbox.close()
    return url


def test_dlq_list_prints_a_person_id_that_looks_like_markup(tmp_path: Path) -> None:
    url = _dead_letter(tmp_path, "cli[/oops]", f"400 [bold]{CLEAR_SCREEN}", {})
    result = _invoke("dlq", "list", CIO_RELAY_OUTBOX=url)
    assert "cli[/oops]" in result.output
    assert "400 [bold]\\x1b[2J\\x1b[H" in result.output


def test_dlq_show_prints_a_link_attribute_as_text(tmp_path: Path) -> None:
    url = _dead_letter(tmp_path, "p-1", "refused", {"note": LINK, "bell": "ding\x07\x9b31m"})
    outbox = open_outbox(url)
    try:
        [dead] = outbox.list_dead(limit=1)
    finally:
        outbox.close()
    result = _invoke("dlq", "show", dead.op.op_id, CIO_RELAY_OUTBOX=url)
    assert LINK in result.output
    # JSON escapes BEL itself; the C1 CSI it leaves as it is, and plain_text makes it visible.
    assert "ding\\u0007\\x9b31m" in result.output


def test_dlq_show_of_an_unknown_id_that_looks_like_markup(tmp_path: Path) -> None:
    url = _dead_letter(tmp_path, "p-1", "refused", {})
    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        app, ["dlq", "show", "[/oops]"], env={"CIO_RELAY_OUTBOX": url}
    )
    assert result.exit_code == 1
    assert "no dead letter with op id [/oops]" in result.output


def test_lake_query_prints_a_subject_that_looks_like_markup(tmp_path: Path) -> None:
    with ParquetLake(tmp_path / "lake") as lake:
        lake.write([row("sent")._replace(subject=f"Your order [/oops] shipped{CLEAR_SCREEN}")])
    result = _invoke(
        "lake", "query", 'SELECT subject AS "[red]s" FROM events', "--lake", str(tmp_path / "lake")
    )
    assert "Your order [/oops] shipped\\x1b[2J\\x1b[H" in result.output
    assert "[red]s" in result.output  # a column name is data too


def test_lake_query_error_quoting_markup_is_printed_as_text(tmp_path: Path) -> None:
    with ParquetLake(tmp_path / "lake") as lake:
        lake.write([row("sent")])
    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        app, ["lake", "query", 'SELECT "[/oops]" FROM events', "--lake", str(tmp_path / "lake")]
    )
    assert result.exit_code == 1
    assert "query failed" in result.output and "[/oops]" in result.output
    assert "Traceback" not in result.output


def test_lake_funnel_prints_a_campaign_id_that_looks_like_markup(tmp_path: Path) -> None:
    with ParquetLake(tmp_path / "lake") as lake:
        lake.write([row("sent", delivery_id="d1", campaign_id="[/oops]\x1b]0;pwned\x07")])
    result = _invoke("lake", "funnel", "--days", "100000", "--lake", str(tmp_path / "lake"))
    assert "[/oops]\\x1b]0;pwned\\x07" in result.output


def test_webhooks_tables_print_ids_errors_and_payloads_as_text(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.db"
    raw = payload("email", "bounced")
    event = parse_event(raw)
    with SQLiteInbox(path) as inbox:
        inbox.store(event, raw)
        inbox.park(event.event_id, error=f"handler [/oops] {LINK}{CLEAR_SCREEN}")
        inbox.quarantine(b"[/oops]\x1b[31m not json", "body: [bold]not valid JSON")
    parked = _invoke("webhooks", "parked", "--inbox", str(path))
    assert f"handler [/oops] {LINK}\\x1b[2J\\x1b[H" in parked.output
    quarantined = _invoke("webhooks", "quarantined", "--inbox", str(path))
    assert "[/oops]\\x1b[31m not json" in quarantined.output
    assert "body: [bold]not valid JSON" in quarantined.output


def test_an_op_id_that_was_not_utf8_is_refused_not_a_traceback(tmp_path: Path) -> None:
    url = _dead_letter(tmp_path, "p-1", "refused", {})
    for command in ("show", "replay", "purge"):
        # A shell passes bytes; Python turns those that are not UTF-8 into lone surrogates.
        result = CliRunner().invoke(
            app, ["dlq", command, "--", "01J\udcff"], env={"CIO_RELAY_OUTBOX": url}
        )
        assert result.exit_code == 2, (command, result.output)
        assert "must be UTF-8 text" in result.output
