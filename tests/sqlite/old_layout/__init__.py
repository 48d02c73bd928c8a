"""Files written by cio-relay before the SQLite layer, kept as SQL, for the stores to open.

Each ``<name>.sql`` was dumped from a file that the code at git 51cf28a wrote (the outbox at
schema version 2, 1 KiB pages; the webhook inbox and the idempotency store with no schema
version and 4 KiB pages), after:

- outbox: ``ada`` enqueued three events (``ADA``, in order), then ``bob`` an identify (``BOB``)
  and ``cy`` an event (``CY``); one lease took each person's first; bob's was retried later
  ("503 busy"), cy's dead-lettered ("400 bad"), ada's released; then ``dee``'s event (``DEE``)
  was enqueued and is still in ``intake``;
- webhooks: three events stored (``WEBHOOK_IDS``), the first marked done, the second parked
  ("handler failed"), the third pending; one payload quarantined (``QUARANTINED``); the cursor
  ``lake`` at 1;
- idempotency: in scope ``scope-a``, ``key-1`` done with ``ADA[0]``, ``key-2`` pending with
  ``BOB`` and ``CY``, both created at ``CREATED_AT``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = [
    "ADA",
    "BOB",
    "CREATED_AT",
    "CY",
    "DEE",
    "QUARANTINED",
    "WEBHOOK_IDS",
    "restore",
]

ADA = ("01M937Y1CHGQDAJH958WNZZ53R", "01M937Y1CHFHCKTZQ96M9JERG0", "01M937Y1CHQGWDGTZF44ZB83A4")
BOB = "01M937Y1CH1EQRYSAARBQCS4P9"
CY = "01M937Y1CHGQXBFBRV5ES9PAWA"
DEE = "01M937Y1CHXH1ZTREAT1AVT57Z"
WEBHOOK_IDS = tuple(f"01HZOLD{i:019d}" for i in range(3))
QUARANTINED = b"\x00not json"
CREATED_AT = 1_760_000_000.0

_HERE = Path(__file__).parent


def restore(name: str, path: Path) -> Path:
    """Make ``path`` the old ``name`` file (outbox, webhooks, idempotency); returns it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript((_HERE / f"{name}.sql").read_text())
    finally:
        conn.close()
    return path
