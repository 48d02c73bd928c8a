"""``open_lake(url)``: the lake backend named by ``CIO_RELAY_LAKE`` / ``Settings.lake_url``.

A directory (or ``file://`` URL) is a ``ParquetLake``; ``memory://`` a ``MemoryLake``.
PostgreSQL and BigQuery lakes are planned (``postgresql://``, ``bigquery://project/dataset``)
and refused with a clear error until they exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cio_relay.errors import ConfigError
from cio_relay.lake.base import Lake

__all__ = ["open_lake"]

_PLANNED = ("postgresql://", "postgres://", "bigquery://")


def open_lake(url: str | Path, **options: Any) -> Lake:
    """Open the lake at ``url``; ``options`` go to the backend (``flush_rows`` ...)."""
    text = str(url)
    if text.startswith(_PLANNED):
        scheme = text.split("://", 1)[0]
        raise ConfigError(
            f"lake: the {scheme} lake backend is not available yet; use a directory "
            "(the Parquet lake) for CIO_RELAY_LAKE"
        )
    if text == "memory://":
        from cio_relay.lake.memory import MemoryLake

        return MemoryLake()
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(f"lake: unsupported URL scheme in {text.split('://', 1)[0]}://...")
    try:
        from cio_relay.lake.parquet import ParquetLake
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("lake: the Parquet lake needs pip install 'cio-relay[lake]'") from exc
    return ParquetLake(text.removeprefix("file://"), **options)
