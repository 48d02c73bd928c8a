"""``cio-relay dlq list|show|replay|purge`` against a real SQLite outbox holding dead letters.

The outbox is filled through its own API: operations enqueued, leased and dead-lettered with a
reason, two of them two hours ago (``now=``), so the kind, reason and age filters all have
something to tell apart. The commands find the outbox through ``CIO_RELAY_OUTBOX``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cio_relay import operations as ops
from cio_relay.cli import app
from cio_relay.operations import Operation
from cio_relay.outbox.base import DeadLetterFilter, DeadReason, Outbox
from cio_relay.outbox.factory import open_outbox

TWO_HOURS = 2 * 3600.0


@dataclass(frozen=True)
class Dead:
    """The dead letters in the outbox, by what tells them apart."""

    url: str
    old_track: str  # track, permanent, dead two hours ago
    old_email: str  # send_email, ambiguous, dead two hours ago
    new_track: str  # track, batch_item, dead now
    new_email: str  # send_email, ambiguous, dead now

    @property
    def all(self) -> set[str]:
        return {self.old_track, self.old_email, self.new_track, self.new_email}


def _kill(outbox: Outbox, op: Operation, reason: DeadReason, detail: str, at: float) -> str:
    """Enqueue ``op``, lease it and dead-letter it as if at ``at``."""
    outbox.enqueue([op])
    [lease] = outbox.lease(10, 30.0)
    assert lease.op.op_id == op.op_id
    outbox.dead_letter(lease, reason, detail, now=at)
    return op.op_id


@pytest.fixture
def dead(tmp_path: Path) -> Dead:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    outbox = open_outbox(url)
    now = time.time()
    then = now - TWO_HOURS
    try:
        email: dict[str, Any] = {"transactional_message_id": "welcome", "message_data": {"n": 1}}
        return Dead(
            url=url,
            old_track=_kill(
                outbox,
                ops.track("p-old-track", "order_completed", {"total": 42}),
                DeadReason.PERMANENT,
                '400 {"meta":{"error":"bad attribute"}}',
                then,
            ),
            old_email=_kill(
                outbox,
                ops.send_email(to="a@example.com", identifiers={"id": "p-old-email"}, **email),
                DeadReason.AMBIGUOUS,
                "sent but no answer came back",
                then,
            ),
            new_track=_kill(
                outbox,
                ops.track("p-new-track", "search", {"q": "boots"}),
                DeadReason.BATCH_ITEM,
                "batch_index 3 refused",
                now,
            ),
            new_email=_kill(
                outbox,
                ops.send_email(to="b@example.com", identifiers={"id": "p-new-email"}, **email),
                DeadReason.AMBIGUOUS,
                "sent but no answer came back",
                now,
            ),
        )
    finally:
        outbox.close()


def _cli(dead: Dead, *argv: str, stdin: str | None = None) -> Result:
    env = {"CIO_RELAY_OUTBOX": dead.url, "COLUMNS": "250"}
    return CliRunner().invoke(app, ["dlq", *argv], env=env, input=stdin)


def _listed(dead: Dead, result: Result) -> set[str]:
    assert result.exit_code == 0, result.output
    return {op_id for op_id in dead.all if op_id in result.output}


def _remaining(dead: Dead) -> set[str]:
    outbox = open_outbox(dead.url)
    try:
        return {letter.op.op_id for letter in outbox.list_dead(DeadLetterFilter(), limit=100)}
    finally:
        outbox.close()


def test_list_shows_every_dead_letter_with_kind_reason_and_total(dead: Dead) -> None:
    result = _cli(dead, "list")
    assert _listed(dead, result) == dead.all
    assert "(1-4 of 4)" in result.output
    for word in ("send_email", "track", "permanent", "batch_item", "ambiguous", "2h"):
        assert word in result.output


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--kind", "send_email"], {"old_email", "new_email"}),
        (["--reason", "ambiguous"], {"old_email", "new_email"}),
        (["--reason", "permanent"], {"old_track"}),
        (["--older-than", "3600"], {"old_track", "old_email"}),
        (["--kind", "track", "--older-than", "3600"], {"old_track"}),
        (["--kind", "sms"], set()),
    ],
)
def test_list_filters_by_kind_reason_and_age(
    dead: Dead, argv: list[str], expected: set[str]
) -> None:
    result = _cli(dead, "list", *argv)
    assert _listed(dead, result) == {getattr(dead, name) for name in expected}
    assert f"of {len(expected)})" in result.output


def test_list_pages_with_limit_and_offset(dead: Dead) -> None:
    first = _listed(dead, _cli(dead, "list", "--limit", "2"))
    second = _listed(dead, _cli(dead, "list", "--limit", "2", "--offset", "2"))
    assert len(first) == len(second) == 2
    assert first | second == dead.all
    assert first == {dead.new_track, dead.new_email}  # newest first


def test_show_prints_the_operation_the_reason_and_the_detail(dead: Dead) -> None:
    result = _cli(dead, "show", dead.old_track)
    assert result.exit_code == 0, result.output
    for text in (dead.old_track, "p-old-track", "permanent", "bad attribute", "order_completed"):
        assert text in result.output


def test_show_of_an_unknown_op_id_fails(dead: Dead) -> None:
    result = _cli(dead, "show", "01NOTADEADLETTER0000000000")
    assert result.exit_code == 1
    assert "no dead letter with op id" in result.output


def test_replay_by_reason_puts_them_back_with_their_op_ids(dead: Dead) -> None:
    result = _cli(dead, "replay", "--reason", "ambiguous")
    assert result.exit_code == 0, result.output
    assert "replayed 2 dead letters" in result.output
    assert _remaining(dead) == {dead.old_track, dead.new_track}
    outbox = open_outbox(dead.url)
    try:
        leased = outbox.lease(10, 30.0)
        depth = outbox.depth()
    finally:
        outbox.close()
    assert {lease.op.op_id for lease in leased} == {dead.old_email, dead.new_email}
    assert {lease.attempts for lease in leased} == {0}  # attempts reset
    assert depth.dead == 2


def test_replay_by_op_id_replays_only_that_one(dead: Dead) -> None:
    result = _cli(dead, "replay", dead.new_track)
    assert "replayed 1 dead letters" in result.output
    assert _remaining(dead) == dead.all - {dead.new_track}


def test_replay_without_ids_filter_or_all_is_refused(dead: Dead) -> None:
    result = _cli(dead, "replay")
    assert result.exit_code == 2
    assert "pass --all" in result.output
    assert _remaining(dead) == dead.all


def test_purge_asks_for_confirmation_and_keeps_them_when_declined(dead: Dead) -> None:
    result = _cli(dead, "purge", "--older-than", "3600", stdin="n\n")
    assert "Purge 2 dead letters for good?" in result.output
    assert result.exit_code == 1
    assert _remaining(dead) == dead.all


def test_purge_deletes_what_matches_once_confirmed(dead: Dead) -> None:
    result = _cli(dead, "purge", "--older-than", "3600", stdin="y\n")
    assert result.exit_code == 0, result.output
    assert "purged 2 dead letters" in result.output
    assert _remaining(dead) == {dead.new_track, dead.new_email}


def test_purge_with_yes_does_not_ask(dead: Dead) -> None:
    result = _cli(dead, "purge", "--kind", "track", "--yes")
    assert result.exit_code == 0, result.output
    assert "for good?" not in result.output
    assert "purged 2 dead letters" in result.output
    assert _remaining(dead) == {dead.old_email, dead.new_email}


def test_purge_all_needs_all(dead: Dead) -> None:
    refused = _cli(dead, "purge", "--yes")
    assert refused.exit_code == 2
    assert _remaining(dead) == dead.all
    purged = _cli(dead, "purge", "--all", "--yes")
    assert "purged 4 dead letters" in purged.output
    assert _remaining(dead) == set()
