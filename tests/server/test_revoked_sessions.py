"""``RevokedSessions``: logged-out dashboard sessions, kept on disk until they expire anyway."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cio_relay.server.dashboard.sessions import RevokedSessions


def test_nothing_is_revoked_or_written_before_the_first_logout(tmp_path: Path) -> None:
    revoked = RevokedSessions(tmp_path / "data" / "sessions.db")
    assert not revoked.is_revoked("a" * 64)
    assert not (tmp_path / "data").exists()


def test_a_revocation_is_seen_by_another_instance_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "sessions.db"
    RevokedSessions(path).revoke("session-1", expires_at=2_000.0, now=1_000.0)
    restarted = RevokedSessions(path)  # a restart, or another process on the data directory
    assert restarted.is_revoked("session-1")
    assert not restarted.is_revoked("session-2")


def test_expired_revocations_are_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    revoked = RevokedSessions(path)
    revoked.revoke("old", expires_at=1_500.0, now=1_000.0)
    revoked.revoke("new", expires_at=3_000.0, now=2_000.0)  # "old" expired at 1,500
    with sqlite3.connect(path) as con:
        kept = [row[0] for row in con.execute("SELECT session FROM revoked")]
    con.close()
    assert kept == ["new"]


def test_an_unreadable_file_refuses_every_session(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    path.write_bytes(b"this is not a database" * 100)
    assert RevokedSessions(path).is_revoked("anything")  # fail closed
