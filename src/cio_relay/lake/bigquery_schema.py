"""The BigQuery table schema that Terraform creates, written from ``lake.schema``.

``deploy/gcp/bigquery_schema.json`` is this module's output, committed so that Terraform reads
it with ``jsondecode(file(...))`` and needs no Python at plan time; a test proves the committed
file equals what this module writes today, so a column added to ``lake.schema.COLUMNS`` fails the
build until the file is written again::

    python -m cio_relay.lake.bigquery_schema deploy/gcp/bigquery_schema.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cio_relay.lake.schema import bigquery_schema

__all__ = ["PARTITION_COLUMN", "main", "schema_json"]

#: The table is partitioned by DAY on this column (mirrors the Parquet lake's ``date=`` folders).
PARTITION_COLUMN = "occurred_at"


def schema_json() -> str:
    """The schema as the committed file holds it: indented, one trailing newline."""
    return json.dumps(bigquery_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema to the path given, or to stdout without one."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("usage: python -m cio_relay.lake.bigquery_schema [OUTPUT.json]", file=sys.stderr)
        return 2
    if args:
        Path(args[0]).write_text(schema_json(), encoding="utf-8")
    else:
        sys.stdout.write(schema_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
