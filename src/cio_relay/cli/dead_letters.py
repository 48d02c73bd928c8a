"""Presenting dead letters to an operator (CLI tables; the dashboard has its own templates).

Every value that came with an operation or from Customer.io (ids, the person, the detail, the
payload) goes through ``plain_text``: it is shown literally, never read as Rich markup, and its
control characters are made visible.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cio_relay.outbox.base import DeadLetter
from cio_relay.plain_text import plain_text

__all__ = ["age", "dead_letter_detail", "dead_letter_table"]


def age(seconds: float) -> str:
    """``42s``, ``7m``, ``3h``, ``2d``: short enough for a table column."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def dead_letter_table(rows: Sequence[DeadLetter], *, total: int, offset: int = 0) -> Table:
    now = time.time()
    shown = f"{offset + 1}-{offset + len(rows)}" if rows else "0"
    table = Table(title=f"dead letters ({shown} of {total})")
    for column in ("op id", "kind", "person", "reason", "attempts", "age", "detail"):
        table.add_column(column, overflow="fold")
    for dead in rows:
        table.add_row(
            plain_text(dead.op.op_id),
            dead.op.kind.value,
            plain_text(dead.op.person_key),
            dead.reason.value,
            str(dead.attempts),
            age(now - dead.dead_at),
            plain_text(dead.detail[:120]),
        )
    return table


def dead_letter_detail(dead: DeadLetter) -> Group:
    op = dead.op
    facts = Table.grid(padding=(0, 2))
    for name, value in (
        ("op id", op.op_id),
        ("kind", op.kind.value),
        ("person", op.person_key),
        ("environment", op.env),
        ("reason", dead.reason.value),
        ("attempts", str(dead.attempts)),
        ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(op.created_at)) + " UTC"),
        ("dead since", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(dead.dead_at)) + " UTC"),
    ):
        facts.add_row(Text(name, style="bold"), plain_text(value))
    # JSON escapes C0 controls but not DEL, C1 controls or bidi overrides; nor Rich markup.
    payload = orjson.dumps(op.payload, option=orjson.OPT_INDENT_2).decode()
    return Group(
        facts,
        Panel(plain_text(dead.detail, multiline=True), title="why"),
        Panel(plain_text(payload, multiline=True), title="payload"),
    )
