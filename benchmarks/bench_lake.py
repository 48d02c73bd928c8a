"""Lake ingest rows/s: ``ParquetLake.write`` + ``flush`` of realistic delivery events (issue 4).

Measured in one run:
(a) lake ingest: rows/s through ``ParquetLake.write()`` (flushing by count, as in production)
    and a final ``flush()``: Arrow conversion, day split, Parquet files fsynced (target >= 200,000);
(b) the reference: ``pyarrow.parquet.write_table`` of the same rows already in one Arrow table
    (the physical limit of the file format here), and the ratio;
(c) the whole webhook path into the lake: stored inbox events parsed and turned into rows by
    the pipeline (``lake_event``) then written, rows/s;
(d) a 30-day campaign funnel over everything written, and compaction, in seconds.
Every loop is bounded by the row count.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import orjson

ROWS = int(os.environ.get("BENCH_LAKE_ROWS", "500000"))
DAYS = 3
METRICS = ("sent", "delivered", "opened", "clicked", "bounced")


def make_rows(count: int) -> list:  # type: ignore[type-arg]
    from cio_relay.lake.schema import LakeEvent

    start = time.time() - DAYS * 86_400
    rows = []
    for i in range(count):
        occurred = start + i * (DAYS * 86_400 / count)
        raw = orjson.dumps(
            {
                "event_id": f"01HZ{i:022d}",
                "object_type": "email",
                "metric": METRICS[i % 5],
                "timestamp": int(occurred),
                "data": {
                    "customer_id": f"user-{i % 20_000}",
                    "email_address": f"u{i % 20_000}@example.com",
                    "delivery_id": f"RPILAgABcRhIBqSp7kiPekGB{i // 5}",
                    "campaign_id": i % 40,
                    "action_id": 42,
                    "recipient": f"u{i % 20_000}@example.com",
                    "subject": "Your order has shipped",
                },
            }
        ).decode()
        rows.append(
            LakeEvent(
                f"01HZ{i:022d}",
                "email",
                METRICS[i % 5],
                float(int(occurred)),
                occurred + 0.5,
                f"user-{i % 20_000}",
                f"u{i % 20_000}@example.com",
                f"RPILAgABcRhIBqSp7kiPekGB{i // 5}",
                str(i % 40),
                None,
                None,
                "42",
                None,
                f"u{i % 20_000}@example.com",
                "Your order has shipped",
                None,
                None,
                raw,
            )
        )
    return rows


def lake_ingest(rows: list, directory: Path) -> float:  # type: ignore[type-arg]
    from cio_relay.lake.parquet import ParquetLake

    lake = ParquetLake(directory, flush_rows=100_000)
    started = time.perf_counter()
    for start in range(0, len(rows), 5_000):  # the pipeline hands over batches of 5,000
        lake.write(rows[start : start + 5_000])
    lake.flush()
    elapsed = time.perf_counter() - started
    lake.close()
    return len(rows) / elapsed


def reference_write(rows: list, directory: Path) -> float:  # type: ignore[type-arg]
    import pyarrow.parquet as pq

    from cio_relay.lake.duck import to_arrow_table

    table = to_arrow_table(rows)
    started = time.perf_counter()
    pq.write_table(table, directory / "reference.parquet", compression="zstd")
    return len(rows) / (time.perf_counter() - started)


def webhook_path(count: int, directory: Path) -> float:
    """Inbox rows (raw bytes) -> parsed events -> lake rows -> Parquet, as the pipeline does."""
    from cio_relay.lake.parquet import ParquetLake
    from cio_relay.webhooks.inbox import HandlerState, StoredEvent
    from cio_relay.webhooks.pipeline import WebhookPipeline

    pending = HandlerState.PENDING
    stored = [
        StoredEvent(i + 1, r.event_id, "email_x", r.raw.encode(), r.received_at, pending, 0, 0.0)
        for i, r in enumerate(make_rows(count))
    ]
    lake = ParquetLake(directory, flush_rows=100_000)
    started = time.perf_counter()
    for start in range(0, len(stored), 5_000):
        lake.write(WebhookPipeline._rows(stored[start : start + 5_000]))
    lake.flush()
    elapsed = time.perf_counter() - started
    lake.close()
    return count / elapsed


def main() -> None:
    from cio_relay.lake.parquet import ParquetLake

    rows = make_rows(ROWS)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        ingest = [lake_ingest(rows, base / f"lake{i}") for i in range(3)]
        reference = [reference_write(rows, base) for _ in range(3)]
        path_rate = webhook_path(min(ROWS, 200_000), base / "path")
        with ParquetLake(base / "lake0") as lake:
            started = time.perf_counter()
            funnel = lake.funnel(by="campaign", days=30)
            funnel_seconds = time.perf_counter() - started
            started = time.perf_counter()
            report = lake.compact()
            compact_seconds = time.perf_counter() - started
            files_after = len(lake.files())
            [(total, distinct)] = lake.query(
                "SELECT count(*), count(DISTINCT event_id) FROM events"
            ).rows
    best, ref = max(ingest), max(reference)
    print(f"{ROWS:,} delivery events over {DAYS + 1} days (best of 3)")
    print(f"  lake ingest (write + flush, fsynced)  {best:>11,.0f} rows/s (target >= 200,000)")
    print(f"  reference: pyarrow write_table        {ref:>11,.0f} rows/s")
    print(f"  ratio lake/reference                  {best / ref:>11.2f}x")
    print(f"  webhook path (parse + row + write)    {path_rate:>11,.0f} rows/s")
    print(f"  funnel, 30 days, {len(funnel):,} rows            {funnel_seconds:>11.2f} s")
    print(
        f"  compaction of {len(report.days)} days, {report.files_before} files -> "
        f"{report.files_after}: {compact_seconds:.2f} s; lake now {files_after} files, "
        f"{total:,} rows, {distinct:,} distinct (must both be {ROWS:,})"
    )


if __name__ == "__main__":
    main()
