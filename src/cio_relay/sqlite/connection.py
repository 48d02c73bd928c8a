"""Opening a store's SQLite file: WAL, the two durability levels, one set of pragmas.

Every SQLite store of cio-relay (the outbox, the webhook inbox, the idempotency keys) opens its
connections here, so all of them run one tuning. The measurements behind each value are in
docs/benchmarks.md ("Issue 12: one SQLite layer"), made with ``python -m benchmarks sqlite``,
which sweeps them on the stores' own workloads; measure there again before changing one.

- ``journal_mode=WAL``: readers never wait for the writer, and a commit appends to one file.
- Durability ``"process"`` runs ``synchronous=NORMAL``: a commit is in the WAL, in the operating
  system's hands, before it returns, so it survives ``kill -9`` of any process (not a power
  cut). ``"power"`` runs ``synchronous=FULL``: every commit is fsynced, so it survives power
  loss too, at the price of one fsync per commit (group commit shares it between callers).
- ``page_size`` (``PAGE_SIZE``): a commit writes every page it dirtied to the WAL whole, so
  small pages make a one-operation commit cheaper; larger pages hold more rows each, so batched
  commits, leases and webhook rows (larger than an operation) touch fewer pages. 2 KiB is the
  size at which one-operation commits cost no more than with 1 KiB pages while batches, leases
  and webhooks gain most of what 4 KiB pages give. Only a new file takes it: an existing file
  keeps the page size it was made with (changing it means a ``VACUUM``, a rewrite of the whole
  file under an exclusive lock).
- ``cache_size`` (``CACHE_KIB`` per connection): the stores keep their rows in the file, never
  in Python memory, so this bounds what a deep queue costs in memory.
- ``wal_autocheckpoint=0``: no commit ever runs a checkpoint; each file's ``Checkpointer``
  thread does, beside the writers (checkpoint.py).
- ``journal_size_limit`` (``WAL_SIZE_LIMIT``): after a checkpoint lets the WAL start over, its
  file is truncated back to this size.
- ``busy_timeout`` (``BUSY_TIMEOUT`` unless a store is given another): how long a write waits
  for another process's write transaction before it fails with SQLITE_BUSY ("database is
  locked"), which each store turns into its "unavailable now, retry" error. Not a measured
  figure but a bound: other processes' transactions are short, so a wait this long means the
  file is stuck, and the caller should hear so (the webhook receiver answers sooner anyway: its
  own ``store_timeout``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal, cast

from cio_relay.errors import ConfigError

__all__ = [
    "BUSY_TIMEOUT",
    "CACHE_KIB",
    "IN_MEMORY",
    "PAGE_SIZE",
    "SYNCHRONOUS",
    "WAL_SIZE_LIMIT",
    "ClosedError",
    "Durability",
    "check_durability",
    "connect",
    "is_environmental",
]

Durability = Literal["process", "power"]
SYNCHRONOUS: dict[str, str] = {"process": "NORMAL", "power": "FULL"}

PAGE_SIZE = 2048
CACHE_KIB = 16 * 1024
WAL_SIZE_LIMIT = 64 * 1024 * 1024
BUSY_TIMEOUT = 10.0  # seconds
#: SQLite's name for a database that lives in the connection (no file, no WAL, no checkpoints).
IN_MEMORY = ":memory:"

#: SQLite primary result codes that say the *file* cannot take writes now (busy, locked,
#: read-only, I/O error, full, cannot open), as opposed to one write being wrong.
_ENVIRONMENTAL = frozenset({5, 6, 8, 10, 13, 14})


class ClosedError(RuntimeError):
    """The store's file was closed; nothing was written or read."""


def check_durability(durability: str) -> Durability:
    if durability not in SYNCHRONOUS:
        raise ConfigError(f"durability must be 'process' or 'power', not {durability!r}")
    return cast(Durability, durability)


def connect(
    path: str | Path, durability: Durability, *, busy_timeout: float = BUSY_TIMEOUT
) -> sqlite3.Connection:
    """A connection to ``path`` with the pragmas above; transactions are the caller's
    (``isolation_level=None``), and it may be shared between threads under a lock."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before WAL: a new file takes it
        if str(path) != IN_MEMORY:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise ConfigError(f"{path}: SQLite cannot use WAL here (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[durability]}")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    except BaseException:
        conn.close()
        raise
    return conn


def is_environmental(error: BaseException) -> bool:
    """Whether ``error`` says the file cannot take writes now (so any other write would fail
    alike) rather than that one write was wrong."""
    if isinstance(error, ClosedError):
        return True
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _ENVIRONMENTAL
