"""One schema: LakeEvent, the column docs, Arrow and BigQuery agree."""

from __future__ import annotations

from datetime import UTC, datetime

from cio_relay.lake.duck import to_arrow_table
from cio_relay.lake.schema import COLUMN_NAMES, COLUMNS, LakeEvent, arrow_schema, bigquery_schema
from tests.lake.helpers import row

EXPECTED = [
    "event_id",
    "object_type",
    "metric",
    "occurred_at",
    "received_at",
    "customer_id",
    "email",
    "delivery_id",
    "campaign_id",
    "broadcast_id",
    "journey_id",
    "action_id",
    "transactional_message_id",
    "recipient",
    "subject",
    "href",
    "failure_message",
    "raw",
]


def test_the_columns_are_the_documented_list_in_order() -> None:
    assert list(COLUMN_NAMES) == EXPECTED == list(LakeEvent._fields)
    assert all(column.doc for column in COLUMNS)


def test_arrow_schema_types_and_docs() -> None:
    schema = arrow_schema()
    assert schema.names == EXPECTED
    assert str(schema.field("occurred_at").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("campaign_id").type) == "string"
    assert not schema.field("event_id").nullable and schema.field("email").nullable
    assert schema.field("raw").metadata[b"doc"].startswith(b"The whole webhook body")


def test_bigquery_schema_mirrors_the_columns() -> None:
    fields = bigquery_schema()
    assert [f["name"] for f in fields] == EXPECTED
    by_name = {f["name"]: f for f in fields}
    assert by_name["occurred_at"] == {
        "name": "occurred_at",
        "type": "TIMESTAMP",
        "mode": "REQUIRED",
        "description": "When it happened (webhook timestamp), UTC.",
    }
    assert by_name["customer_id"]["mode"] == "NULLABLE"


def test_rows_become_arrow_columns_with_microsecond_utc_timestamps() -> None:
    first = row(when="2024-05-01 23:59:59")._replace(received_at=1714607999.123456)
    table = to_arrow_table([first, row(customer_id=None)])
    assert table.schema == arrow_schema()
    assert table.column("occurred_at")[0].as_py() == datetime(2024, 5, 1, 23, 59, 59, tzinfo=UTC)
    assert table.column("received_at")[0].as_py() == datetime(
        2024, 5, 1, 23, 59, 59, 123456, tzinfo=UTC
    )
    assert table.column("customer_id").to_pylist() == ["u1", None]
    assert to_arrow_table([]).num_rows == 0
