"""``open_outbox``: URLs and paths to backends, with clear errors for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from cio_relay.errors import ConfigError
from cio_relay.outbox import MemoryOutbox, Outbox, SqliteOutbox, open_outbox

from .test_contract import event


def _sqlite(outbox: Outbox) -> SqliteOutbox:
    assert isinstance(outbox, SqliteOutbox)
    return outbox


def test_sqlite_url_with_a_relative_path_creates_parent_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    outbox = _sqlite(open_outbox("sqlite:///data/deep/outbox.db"))
    try:
        assert outbox.enqueue([event("a")]) == 1
        assert outbox.path == Path("data/deep/outbox.db")
        assert (tmp_path / "data/deep/outbox.db").is_file()
        assert outbox.durability == "process"
    finally:
        outbox.close()


def test_sqlite_url_with_an_absolute_path_and_power_durability(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "outbox.db"
    outbox = _sqlite(open_outbox(f"sqlite:///{target}", durability="power"))
    try:
        assert outbox.path == target
        assert outbox.durability == "power"
    finally:
        outbox.close()


def test_a_bare_path_opens_sqlite(tmp_path: Path) -> None:
    for spelled in (tmp_path / "a" / "one.db", str(tmp_path / "b" / "two.db")):
        outbox = _sqlite(open_outbox(spelled))
        outbox.close()
        assert Path(spelled).is_file()


def test_memory_url_opens_a_memory_outbox() -> None:
    outbox = open_outbox("memory://")
    assert isinstance(outbox, MemoryOutbox)
    outbox.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kafka://broker:9092", "unknown scheme 'kafka'; expected one of sqlite://, memory://"),
        ("sqlite://", "write sqlite:///relative/path.db"),
        ("sqlite:///", "names no file"),
        ("sqlite://relative.db", "write sqlite:///relative/path.db"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_outbox(url)
