"""Dashboard sessions ended by logging out, remembered until they would have expired anyway.

A session cookie is a stateless HMAC (``server/auth.py``), valid for 12 hours wherever it is
presented. Logging out used to delete it from the browser only, so a copy taken earlier (a
shared machine, a proxy log) kept working. Now logout records the session's id here, and a
revoked session is no session.

Where the revocations live, and why:

- in a small SQLite file in the data directory (``dashboard-sessions.db``), so a revocation
  survives a restart (kept in memory, a restart would bring every logged-out cookie back for
  the rest of its 12 hours) and is shared by every process that serves the dashboard from that
  data directory (uvicorn workers, a restarted service);
- one row per logout, keyed by ``ApiKeys.session_id`` (a hash of the cookie's signature: the
  file holds nothing that could be presented as a cookie), deleted once the session would have
  expired anyway, so the file stays as small as the logouts of the last 12 hours;
- read on each dashboard request that carries a cookie (a primary-key lookup, tens of
  microseconds), through a connection opened per call: the dashboard is used by people, not
  load, and no connection outlives its call or is shared across threads;
- created on the first logout: until then nothing is revoked and nothing is written;
- if the file cannot be read, sessions are refused (bearer keys still work): fail closed.

Several hosts serving the dashboard would each keep their own file, so a logout on one would not
reach the others: serve the dashboard from one host (it reads the shared outbox anyway), or
rotate the key (``CIO_RELAY_API_KEYS``), which ends every session made with it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["RevokedSessions"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS revoked "
    "(session TEXT PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID"
)


class RevokedSessions:
    """``RevokedSessions(path)``: see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RevokedSessions({str(self.path)!r})"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # closing() closes the connection; ``con`` as a context commits (or rolls back) on leaving.
        with contextlib.closing(sqlite3.connect(self.path, timeout=5.0)) as con, con:
            yield con

    def revoke(self, session: str, *, expires_at: float, now: float | None = None) -> None:
        """Refuse ``session`` from now on; forget it, and every other expired one, after then."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            # A revocation must outlive a power cut as much as the logout it answers.
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = FULL")
            con.execute(_SCHEMA)
            con.execute(
                "INSERT OR REPLACE INTO revoked (session, expires_at) VALUES (?, ?)",
                (session, expires_at),
            )
            current = time.time() if now is None else now
            con.execute("DELETE FROM revoked WHERE expires_at < ?", (current,))

    def is_revoked(self, session: str) -> bool:
        """True if ``session`` was logged out, or if that cannot be known (fail closed)."""
        if not self.path.exists():
            return False
        try:
            with self._connect() as con:
                found = con.execute(
                    "SELECT 1 FROM revoked WHERE session = ?", (session,)
                ).fetchone()
        except sqlite3.Error:
            return True
        return found is not None
