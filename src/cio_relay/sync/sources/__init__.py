"""Where a bulk sync's people come from: ``open_source(spec)`` picks the source its URL names.

- ``postgresql://`` or ``postgres://``: ``PostgresSource`` (psycopg 3, a server-side cursor);
- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: ``SqliteSource``;
- a path ending ``.csv``, ``.tsv`` (optionally ``.gz``), ``.parquet`` or ``.pq``, or any path
  after ``csv:`` or ``parquet:``: ``FileSource`` through DuckDB.

Every source yields ``SourceRow``s in key order, a batch at a time (base.py), with values
converted alike (values.py). Each optional driver is imported only by its own source; a missing
one is a ``ConfigError`` naming the pip extra.
"""

from __future__ import annotations

from pathlib import Path

from cio_relay.errors import ConfigError
from cio_relay.sync.sources.base import Source, SourceRow, Unconvertible, without_password
from cio_relay.sync.sources.files import FileKind, FileSource
from cio_relay.sync.sources.postgres import PostgresSource
from cio_relay.sync.sources.sqlite import SqliteSource
from cio_relay.sync.sources.values import attribute_value
from cio_relay.sync.spec import SyncSpec

__all__ = [
    "FileSource",
    "PostgresSource",
    "Source",
    "SourceRow",
    "SqliteSource",
    "Unconvertible",
    "attribute_value",
    "open_source",
    "without_password",
]

_POSTGRES_SCHEMES = ("postgresql", "postgres")
_FILE_PREFIXES: dict[str, FileKind] = {"csv:": "csv", "parquet:": "parquet"}
_FILE_SUFFIXES: dict[str, FileKind] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".csv.gz": "csv",
    ".tsv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def open_source(spec: SyncSpec) -> Source:
    """The source ``spec.source`` names, open and with its columns checked.

    Raises ``ConfigError`` (naming the field and its value, never a password) for a URL that
    names no source, a missing file or driver, neither or both of ``query`` and ``table``, and
    an id or updated-at column the result lacks.
    """
    text = spec.source.strip()
    scheme, separator, rest = text.partition("://")
    if separator and scheme.lower() in _POSTGRES_SCHEMES:
        return PostgresSource(spec)
    if separator and scheme.lower() == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise ConfigError(
                f"source {text!r}: write sqlite:///relative/path.db or sqlite:////abs/path.db"
            )
        return SqliteSource(spec, Path(rest[1:]).expanduser())
    if not separator:
        for prefix, kind in _FILE_PREFIXES.items():
            if text.lower().startswith(prefix) and len(text) > len(prefix):
                return FileSource(spec, text[len(prefix) :], kind)
        for suffix, kind in _FILE_SUFFIXES.items():
            if text.lower().endswith(suffix):
                return FileSource(spec, text, kind)
    raise ConfigError(
        f"source: {without_password(text)!r} names no source; expected postgresql://...,"
        " sqlite:///path.db, a .csv or .parquet path, or csv:/parquet: before a path"
    )
