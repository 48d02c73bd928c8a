"""The syncs file: bulk syncs declared as ``[[sync]]`` tables of a TOML file.

``CIO_RELAY_SYNCS`` (or ``cio-relay sync --syncs FILE``) names it; each table is a ``SyncSpec``
(spec.py), its keys the spec's fields::

    [[sync]]
    name = "users"
    source = "postgresql://app@db.internal/app"
    table = "users"
    id_column = "user_id"
    updated_at_column = "updated_at"
    mode = "incremental"
    every = 300            # inside `cio-relay run`: a run every 5 minutes

    [[sync]]
    name = "trial-list"
    source = "exports/trials.csv"
    id_column = "email"
    id_type = "email"

Names are unique in the file. A relative file path in ``source`` is read from the working
directory of the process, as on the command line. Every problem (a missing file, bad TOML, an
unknown key, a value a spec refuses, a name twice) is one ``ConfigError`` that names the file,
the sync and the field, and never quotes a value: a source URL may hold a password.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pydantic

from cio_relay.errors import ConfigError
from cio_relay.sync.spec import SyncSpec

__all__ = ["load_syncs", "spec_from_fields", "sync_named"]


def load_syncs(path: Path) -> dict[str, SyncSpec]:
    """The syncs of the file at ``path``, by name, in file order; ``ConfigError`` (module
    docstring) for a file that cannot be used."""
    tables = _sync_tables(path)
    specs: dict[str, SyncSpec] = {}
    for index, table in enumerate(tables, start=1):
        where = f"{path}: [[sync]] #{index}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} is not a table")
        if isinstance(table.get("name"), str):
            where += f" ({table['name']})"
        spec = spec_from_fields(table, where)
        if spec.name in specs:
            raise ConfigError(f"{where}: the name {spec.name!r} is used twice")
        specs[spec.name] = spec
    return specs


def sync_named(path: Path, name: str) -> SyncSpec:
    """The sync called ``name`` in the file at ``path``; ``ConfigError`` naming the ones there
    when it has none of that name."""
    specs = load_syncs(path)
    if name not in specs:
        known = ", ".join(specs) or "none"
        raise ConfigError(f"{path} has no sync named {name!r} (it has: {known})")
    return specs[name]


def spec_from_fields(fields: dict[str, Any], where: str) -> SyncSpec:
    """``SyncSpec(**fields)``, its validation errors one ``ConfigError`` that starts with
    ``where`` and lists each field and problem without the values given."""
    try:
        return SyncSpec(**fields)
    except pydantic.ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'sync'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False, include_context=False)
        ]
        raise ConfigError(f"{where}: {'; '.join(problems)}") from None


def _sync_tables(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"syncs file {path} does not exist (CIO_RELAY_SYNCS, --syncs)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"syncs file {path} cannot be read ({type(exc).__name__})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"syncs file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"sync"})
    if unknown:
        raise ConfigError(
            f"syncs file {path}: only [[sync]] tables belong here, not {', '.join(unknown)}"
        )
    tables = document.get("sync", [])
    if not isinstance(tables, list):
        raise ConfigError(f"syncs file {path}: write each sync as a [[sync]] table")
    return tables
