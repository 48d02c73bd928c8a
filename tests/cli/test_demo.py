"""``cio-relay demo`` with a small workload, end to end in this process.

The sandbox emulator, the webhook receiver, the pipeline and the lake are all real (127.0.0.1
sockets, SQLite, Parquet). The checks are the consistency the walkthrough claims: everything
enqueued is delivered or dead-lettered, the burst of faults dead-letters exactly the two dropped
(ambiguous) sends, every webhook the emulator sent was verified and landed in the lake, and the
people whose email bounced or was reported as spam are exactly those suppressed at the emulator.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from cio_relay.cli import app
from cio_relay.cli.demo import DemoWorkload, funnel_totals, run_demo
from cio_relay.lake.parquet import ParquetLake
from cio_relay.outbox.base import DeadLetterFilter
from cio_relay.outbox.factory import open_outbox

WORKLOAD = DemoWorkload(people=40, events=300, emails=30)
FLAGS = ["--people", "40", "--events", "300", "--emails", "30"]
#: emails 0, 10, 20 go to bounce.test and 1, 26 to spam.test (DemoWorkload's defaults)
BOUNCING = {0, 10, 20}
SPAMMING = {1, 26}
#: each webhook story: sent, delivered, opened, clicked; a bounce: sent, bounced; spam: sent,
#: delivered, spammed
STORY = {"ok": 4, "bounce": 2, "spam": 3}


def _summary(output: str) -> dict[str, int]:
    """The summary table's rows as {measure: number} (Rich box rows: ``│ name │ 1,234 │``)."""
    rows: dict[str, int] = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if len(cells) == 2 and re.fullmatch(r"[\d,.]+( s)?", cells[1]):
            rows[cells[0]] = int(float(cells[1].removesuffix(" s").replace(",", "")))
    return rows


def _funnel_rows(output: str) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if len(cells) == 7 and cells[0] in ("welcome", "password_reset", "order_receipt", "all"):
            rows[cells[0]] = [int(cell.replace(",", "")) for cell in cells[1:]]
    return rows


def test_demo_command_prints_a_consistent_summary_and_the_funnel(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", *FLAGS, "--data-dir", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "SANDBOX MODE" in out and "A burst of faults was injected midway" in out
    summary = _summary(out)
    enqueued = 40 + 300 + 30 + 1
    assert summary["operations enqueued"] == enqueued
    assert summary["dead-lettered: ambiguous"] == 2  # the two dropped sends, never re-sent
    assert summary["delivered"] + summary["dead-lettered: ambiguous"] == enqueued
    assert summary["retries scheduled"] > 0  # the 500/503/429 burst was retried
    assert summary["events accepted by the emulator"] == 300
    assert summary["requests sent"] > 0

    # The dead letters are the two transactional sends whose connection was dropped.
    outbox = open_outbox(f"sqlite:///{tmp_path / 'demo-outbox.db'}")
    try:
        dead = outbox.list_dead(DeadLetterFilter(), limit=100)
        assert outbox.depth().pending == 0
    finally:
        outbox.close()
    assert [(d.op.kind.value, d.reason.value) for d in dead] == [("send_email", "ambiguous")] * 2
    dropped = {int(d.op.payload["message_data"]["n"]) for d in dead}
    sent = set(range(30)) - dropped
    bounced = {f"user-{n}" for n in BOUNCING & sent}
    spammed = {f"user-{n}" for n in SPAMMING & sent}

    # Every webhook of every email that went out was verified, stored and written to the lake.
    webhooks = sum(
        STORY["bounce" if n in BOUNCING else "spam" if n in SPAMMING else "ok"] for n in sent
    )
    assert summary["webhooks sent by the emulator"] == webhooks
    assert summary["webhooks the emulator gave up on"] == 0
    assert summary["webhooks verified and stored"] == webhooks
    assert summary["webhook events written to the lake"] == webhooks
    with ParquetLake(tmp_path / "lake") as lake:
        assert lake.query("SELECT count(*) FROM events").rows[0][0] == webhooks
        in_lake = lake.query(
            "SELECT metric, customer_id FROM events WHERE metric IN ('bounced', 'spammed')"
        ).rows
    assert {person for metric, person in in_lake if metric == "bounced"} == bounced
    assert {person for metric, person in in_lake if metric == "spammed"} == spammed

    # The funnel table: sent, delivered, opened, clicked, bounced, spammed; summed over messages.
    funnel = _funnel_rows(out)
    assert set(funnel) == {"welcome", "password_reset", "order_receipt", "all"}
    ok = len(sent) - len(bounced) - len(spammed)
    assert funnel["all"] == [len(sent), ok + len(spammed), ok, ok, len(bounced), len(spammed)]

    # The bounce and spam handlers suppressed exactly those people, through the outbox.
    people = len(bounced | spammed)
    assert summary["suppressions enqueued by the bounce/spam handlers"] == people
    assert summary["suppressions delivered"] == people
    assert summary["people suppressed at the emulator"] == people
    assert f"People suppressed at the emulator: {people}" in out


def test_run_demo_suppresses_exactly_the_people_who_bounced_or_reported_spam() -> None:
    result = run_demo(Console(file=io.StringIO(), width=200), WORKLOAD, seed=7)
    stats = result.stats
    assert result.faults_injected
    assert stats.delivered + stats.dead_total == result.enqueued
    assert result.dead_by_reason == {"ambiguous": 2}
    assert result.bounced_people  # some bounce.test sends went out
    assert result.suppressed_people == result.bounced_people
    assert result.suppression_stats.delivered == len(result.bounced_people)
    assert result.suppression_stats.dead_total == 0
    totals = funnel_totals(result.funnel)
    assert set(totals) == {"welcome", "password_reset", "order_receipt"}
    assert sum(t["sent"] for t in totals.values()) == 30 - 2
    bounced_or_spammed = sum(t["bounced"] + t["spammed"] for t in totals.values())
    assert bounced_or_spammed == len(result.bounced_people)  # one email per person here


def test_demo_refuses_a_workload_without_people() -> None:
    result = CliRunner().invoke(app, ["demo", "--people", "0"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "--people" in result.output


def test_demo_refuses_a_data_dir_with_files_in_it(tmp_path: Path) -> None:
    (tmp_path / "outbox.db").write_bytes(b"")
    result = CliRunner().invoke(
        app, ["demo", *FLAGS, "--data-dir", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2
    assert "new or empty directory" in result.output
