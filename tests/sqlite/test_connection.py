"""One set of pragmas for every store's file; which failures say the file cannot take writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cio_relay.errors import ConfigError
from cio_relay.sqlite.connection import (
    CACHE_KIB,
    PAGE_SIZE,
    WAL_SIZE_LIMIT,
    ClosedError,
    check_durability,
    connect,
    is_environmental,
)


def test_a_new_file_gets_the_layers_pragmas(tmp_path: Path) -> None:
    conn = connect(tmp_path / "new.db", "process", busy_timeout=2.5)
    try:
        conn.execute("CREATE TABLE t (x)")
        pragmas = {
            name: conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in (
                "page_size",
                "journal_mode",
                "synchronous",
                "cache_size",
                "journal_size_limit",
                "wal_autocheckpoint",
                "busy_timeout",
            )
        }
    finally:
        conn.close()
    assert pragmas == {
        "page_size": PAGE_SIZE,
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL
        "cache_size": -CACHE_KIB,
        "journal_size_limit": WAL_SIZE_LIMIT,
        "wal_autocheckpoint": 0,
        "busy_timeout": 2500,
    }


def test_power_durability_fsyncs_every_commit(tmp_path: Path) -> None:
    conn = connect(tmp_path / "power.db", "power")
    try:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        conn.close()


def test_an_existing_file_keeps_its_page_size(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("PRAGMA page_size = 4096")
    old.execute("CREATE TABLE t (x)")
    old.commit()
    old.close()
    conn = connect(path, "process")
    try:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_an_unknown_durability_is_a_config_error() -> None:
    assert check_durability("power") == "power"
    with pytest.raises(ConfigError, match="durability must be 'process' or 'power'"):
        check_durability("sometimes")


def test_a_locked_file_is_environmental_and_a_bad_statement_is_not(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = connect(path, "process")
    waiter = connect(path, "process", busy_timeout=0)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as locked:
            waiter.execute("BEGIN IMMEDIATE")
        holder.execute("ROLLBACK")
        with pytest.raises(sqlite3.OperationalError) as wrong:
            waiter.execute("nonsense")
    finally:
        holder.close()
        waiter.close()
    assert is_environmental(locked.value)
    assert not is_environmental(wrong.value)
    assert is_environmental(ClosedError("closed"))
    assert not is_environmental(ValueError("a work's own mistake"))
