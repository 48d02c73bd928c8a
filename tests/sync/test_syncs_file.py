"""The syncs file: ``[[sync]]`` tables loaded as ``SyncSpec``s, every problem one
``ConfigError`` naming the file, the sync and the field, never a value (a password)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cio_relay.errors import ConfigError
from cio_relay.sync.syncs_file import load_syncs, sync_named

TWO_SYNCS = """
[[sync]]
name = "users"
source = "postgresql://app:hunter2@db/app"
table = "users"
mode = "incremental"
updated_at_column = "updated_at"
every = 300

[[sync]]
name = "trials"
source = "exports/trials.csv"
id_column = "email"
id_type = "email"
"""


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncs.toml"
    path.write_text(text)
    return path


def test_each_table_is_a_spec_by_name_in_file_order(tmp_path: Path) -> None:
    specs = load_syncs(written(tmp_path, TWO_SYNCS))

    assert list(specs) == ["users", "trials"]
    assert (specs["users"].mode, specs["users"].every, specs["users"].overlap) == (
        "incremental",
        300.0,
        300.0,
    )
    assert (specs["trials"].id_type, specs["trials"].every) == ("email", None)
    assert sync_named(tmp_path / "syncs.toml", "trials") == specs["trials"]
    assert load_syncs(written(tmp_path, "")) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[sync]\nname = 1", "is not valid TOML"),
        ('name = "users"', "only [[sync]] tables belong here, not name"),
        ('sync = "users"', "write each sync as a [[sync]] table"),
        (
            TWO_SYNCS.replace('"trials"', '"users"'),
            "[[sync]] #2 (users): the name 'users' is used twice",
        ),
        (
            TWO_SYNCS.replace('table = "users"', 'table = "users"\nquery = "SELECT 1"'),
            "[[sync]] #1 (users): sync: Value error, give query or table, not both",
        ),
        (TWO_SYNCS.replace("every = 300", "every = 0"), "#1 (users): every: Input should be"),
        (TWO_SYNCS.replace("every = 300", "evry = 300"), "#1 (users): evry: Extra inputs"),
        ('[[sync]]\ntable = "people"', "[[sync]] #1: source: Field required"),
    ],
)
def test_a_problem_is_one_error_naming_the_file_and_sync_without_values(
    tmp_path: Path, text: str, message: str
) -> None:
    path = written(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_syncs(path)
    assert str(raised.value).startswith(f"{path}") or str(raised.value).startswith("syncs file")
    assert message in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_a_missing_file_or_name_says_what_there_is(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_syncs(tmp_path / "missing.toml")
    path = written(tmp_path, TWO_SYNCS)
    with pytest.raises(ConfigError, match=r"has no sync named 'nope' \(it has: users, trials\)"):
        sync_named(path, "nope")
