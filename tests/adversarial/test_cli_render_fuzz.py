"""The operator CLI's renderers under arbitrary text: shown literally, never markup or escapes.

Every renderer of the CLI (dead letters as a table and in detail, parked and quarantined
webhooks, lake query results and funnels, the commands' error lines) gets hypothesis text in
every field that comes from data: free text, Rich markup (``[bold]``, ``[/oops]``,
``[link=...]``), ESC/CSI/OSC sequences, C1 controls, bidi overrides, lone surrogates.
Properties (issue 11): it renders without raising; the output holds no control character but
the newline, and on a colour terminal no escape sequence but Rich's own colours (so no OSC 8
hyperlink, no cursor movement, no title change from data); and each field's text appears
literally, with its non-printable characters as visible escapes (``plain_text``).

Rendering is pure (a console writing to memory), about 1 ms an example; the two commands run
through Typer's ``CliRunner``. ``max_examples`` keeps the file near 10 s on two cores.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console, RenderableType
from typer.testing import CliRunner

from cio_relay.cli import app
from cio_relay.cli.dead_letters import dead_letter_detail, dead_letter_table
from cio_relay.cli.lake_tables import funnel_table, query_table
from cio_relay.cli.webhook_tables import parked_table, quarantine_table
from cio_relay.lake.base import QueryResult
from cio_relay.lake.funnel import FunnelRow
from cio_relay.operations import Kind, Operation
from cio_relay.outbox.base import DeadLetter, DeadReason
from cio_relay.plain_text import plain_text
from cio_relay.webhooks.inbox import HandlerState, QuarantinedPayload, StoredEvent

WIDTH = 4000  # wide enough that no cell wraps: every field's text stays on one line

NASTY = (
    "\x1b[31mred",
    "\x1b[2J\x1b[H",
    "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "\x1b]0;title\x07",
    "\x9b2J",
    "\x07\x08\r\x00\x7f",
    "[bold]",
    "[/oops]",
    "[link=https://evil.example]click me[/link]",
    "[/]",
    ":smile:",
    "\u202eevil",
    "\u200b\ufeff",
    "\ud800",
    "\\x1b",
    "line\nbreak",
)
text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(NASTY),
    st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=6)), max_size=4).map("".join),
)
SGR = re.compile(r"\x1b\[[0-9;]*m")

_FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _render(renderable: RenderableType, *, terminal: bool) -> str:
    out = io.StringIO()
    console = Console(
        file=out,
        width=WIDTH,
        force_terminal=terminal,
        color_system="truecolor" if terminal else None,
        legacy_windows=False,
    )
    console.print(renderable)
    return out.getvalue()


def _assert_safe_and_literal(renderable: RenderableType, fields: Iterable[str]) -> None:
    plain = _render(renderable, terminal=False)
    assert all(char == "\n" or char.isprintable() for char in plain), repr(plain)
    coloured = SGR.sub("", _render(renderable, terminal=True))
    assert all(char == "\n" or char.isprintable() for char in coloured), repr(coloured)
    for field in fields:
        for line in plain_text(field, multiline=True).plain.split("\n"):
            assert line in plain, (line, plain)


def _dead_letter(op_id: str, person: str, env: str, detail: str, payload: dict[str, Any]) -> Any:
    op = Operation(op_id, Kind.IDENTIFY, {"id": person}, payload, created_at=1e9, env=env)
    return DeadLetter(op, DeadReason.PERMANENT, detail, attempts=3, dead_at=1e9)


#: Payload text was JSON once (orjson refuses lone surrogates), so it has none.
json_text = text.filter(lambda value: not any("\ud800" <= char <= "\udfff" for char in value))


@_FUZZ
@given(op_id=text, person=text, env=text, detail=text, key=json_text, value=json_text)
def test_dead_letters_as_table_and_detail(
    op_id: str, person: str, env: str, detail: str, key: str, value: str
) -> None:
    dead = _dead_letter(op_id, person, env, detail, {"attributes": {key: value}})
    _assert_safe_and_literal(
        dead_letter_table([dead], total=1), [op_id, f"id:{person}", detail[:120]]
    )
    payload = orjson.dumps(dead.op.payload, option=orjson.OPT_INDENT_2).decode()
    _assert_safe_and_literal(
        dead_letter_detail(dead), [op_id, f"id:{person}", env, detail, payload]
    )


@_FUZZ
@given(event_id=text, name=text, error=text, raw=st.binary(max_size=100), reason=text)
def test_parked_and_quarantined_webhooks(
    event_id: str, name: str, error: str, raw: bytes, reason: str
) -> None:
    parked = StoredEvent(1, event_id, name, b"{}", 1e9, HandlerState.PARKED, 5, 0.0, error)
    _assert_safe_and_literal(parked_table([parked], total=1), [event_id, name, error])
    quarantined = QuarantinedPayload(7, raw, reason, 1e9)
    preview = raw[:80].decode("utf-8", "replace") + ("..." if len(raw) > 80 else "")
    _assert_safe_and_literal(quarantine_table([quarantined], total=1), [reason, preview])


@_FUZZ
@given(columns=st.lists(text, min_size=1, max_size=3), cells=st.lists(text, max_size=3))
def test_lake_query_results(columns: list[str], cells: list[str]) -> None:
    row = (cells + [""] * len(columns))[: len(columns)]
    result = QueryResult(columns, [tuple(row)])
    _assert_safe_and_literal(query_table(result), [*columns, *row])
    mixed = QueryResult(
        ["n", "at", "day", "none", "text"],
        [(3, datetime(2024, 5, 1, tzinfo=UTC), date(2024, 5, 1), None, columns[0])],
    )
    _assert_safe_and_literal(query_table(mixed), ["2024-05-01 00:00:00+00:00", columns[0]])


@_FUZZ
@given(message_id=text)
def test_lake_funnels(message_id: str) -> None:
    row = FunnelRow(date(2024, 5, 1), "campaign", message_id, 10, 9, 5, 2, 1, 0, 0)
    _assert_safe_and_literal(funnel_table([row], by="campaign"), [message_id])


@pytest.fixture(scope="module")
def empty_outbox(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('cli-fuzz') / 'outbox.db'}"


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-fuzz-lake")


def _invoke(argv: list[str], env: dict[str, str]) -> Any:
    result = CliRunner(env={"COLUMNS": str(WIDTH), **env}).invoke(app, argv)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert all(char == "\n" or char.isprintable() for char in result.output), repr(result.output)
    return result


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(op_id=text)
def test_dlq_show_of_any_op_id(empty_outbox: str, op_id: str) -> None:
    result = _invoke(["dlq", "show", "--", op_id], {"CIO_RELAY_OUTBOX": empty_outbox})
    output = result.output.replace("\n", "")
    if any("\ud800" <= char <= "\udfff" for char in op_id):  # bytes that were not UTF-8
        assert result.exit_code == 2 and "must be UTF-8 text" in output
    else:
        assert result.exit_code == 1
        assert f"no dead letter with op id {plain_text(op_id).plain}" in output


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sql=text)
def test_lake_query_of_any_text(lake_dir: Path, sql: str) -> None:
    _invoke(["lake", "query", "--lake", str(lake_dir), "--", sql], {})
