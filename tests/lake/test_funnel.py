"""Funnel numbers against a hand-computed example, on the memory and the Parquet lake."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from cio_relay.lake.base import Lake
from cio_relay.lake.funnel import funnel_query
from cio_relay.lake.memory import MemoryLake
from cio_relay.lake.parquet import ParquetLake
from tests.lake.helpers import row

DAY1 = "2024-05-01 10:00:00"
DAY2 = "2024-05-02 09:00:00"


def example() -> list:  # type: ignore[type-arg]
    c10 = {"campaign_id": "10"}
    sent_d5 = row("sent", DAY1, delivery_id="d5", campaign_id="11")
    return [
        # Campaign 10, day 1: d1..d4 sent; d1-d3 delivered, d4 bounced; d1 opened twice and
        # clicked; d2 opened and marked spam; d3 unsubscribed.
        *(row("sent", DAY1, delivery_id=f"d{i}", **c10) for i in range(1, 5)),
        *(row("delivered", DAY1, delivery_id=f"d{i}", **c10) for i in range(1, 4)),
        row("bounced", DAY1, delivery_id="d4", **c10),
        row("opened", DAY1, delivery_id="d1", **c10),
        row("opened", "2024-05-01 11:00:00", delivery_id="d1", **c10),
        row("opened", DAY1, delivery_id="d2", **c10),
        row("clicked", DAY1, delivery_id="d1", **c10),
        row("spammed", DAY1, delivery_id="d2", **c10),
        row("unsubscribed", DAY1, delivery_id="d3", **c10),
        # Campaign 10, day 2: d3 opened late.
        row("opened", DAY2, delivery_id="d3", **c10),
        # Campaign 11, day 1: d5 sent (the webhook delivered twice) and delivered.
        sent_d5,
        sent_d5._replace(received_at=sent_d5.received_at + 60),
        row("delivered", DAY1, delivery_id="d5", campaign_id="11"),
        # Noise that must not count: a customer event carrying a campaign id, no campaign id.
        row("unsubscribed", DAY1, object_type="customer", campaign_id="10"),
        row("sent", DAY1, delivery_id="d9"),
        # A transactional message and a broadcast.
        row("sent", DAY1, delivery_id="t1", transactional_message_id="7"),
        row("delivered", DAY1, delivery_id="t1", transactional_message_id="7"),
        row("sent", DAY2, delivery_id="b1", broadcast_id="3"),
        row("bounced", DAY2, delivery_id="b1", broadcast_id="3"),
        # A push notification for campaign 10: counted unless the channel is email.
        row("sent", DAY1, object_type="push", delivery_id="p1", **c10),
    ]


@pytest.fixture(params=["memory", "parquet"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    opened: Lake = MemoryLake() if request.param == "memory" else ParquetLake(tmp_path)
    rows = example()
    opened.write(rows[:10])
    opened.flush()
    opened.write(rows[10:])
    yield opened
    opened.close()


def test_campaign_funnel_matches_the_hand_computed_numbers(lake: Lake) -> None:
    rows = lake.funnel(by="campaign", days=None, channel="email")
    got = [(r.day.isoformat(), r.message_id, r.sent, r.delivered, r.opened, r.clicked,
            r.bounced, r.spammed, r.unsubscribed) for r in rows]  # fmt: skip
    assert got == [
        ("2024-05-01", "10", 4, 3, 2, 1, 1, 1, 1),
        ("2024-05-01", "11", 1, 1, 0, 0, 0, 0, 0),
        ("2024-05-02", "10", 0, 0, 1, 0, 0, 0, 0),
    ]
    first = rows[0]
    assert first.delivery_rate == pytest.approx(3 / 4)
    assert first.open_rate == pytest.approx(2 / 3)
    assert first.click_rate == pytest.approx(1 / 2)
    assert first.bounce_rate == pytest.approx(1 / 4)
    assert first.spam_rate == pytest.approx(1 / 3)
    assert first.unsubscribe_rate == pytest.approx(1 / 3)
    late = rows[2]
    assert late.delivery_rate is None and late.open_rate is None and late.click_rate == 0.0


def test_every_channel_counts_unless_one_is_named(lake: Lake) -> None:
    [first, *_] = lake.funnel(by="campaign", days=None)
    assert first.sent == 5 and first.bounce_rate == pytest.approx(1 / 5)


def test_transactional_and_broadcast_funnels(lake: Lake) -> None:
    [tx] = lake.funnel(by="transactional", days=None)
    assert (tx.day, tx.message_id, tx.sent, tx.delivered, tx.delivery_rate) == (
        date(2024, 5, 1),
        "7",
        1,
        1,
        1.0,
    )
    [bc] = lake.funnel(by="broadcast", days=None)
    assert (bc.message_id, bc.sent, bc.bounced, bc.bounce_rate) == ("3", 1, 1, 1.0)
    assert bc.as_dict()["bounce_rate"] == 1.0 and bc.as_dict()["by"] == "broadcast"


def test_the_days_window_counts_back_from_today(lake: Lake) -> None:
    today = date(2024, 5, 2)
    assert [r.day for r in lake.funnel(days=1, today=today, channel="email")] == [today]
    assert len(lake.funnel(days=2, today=today, channel="email")) == 3
    assert lake.funnel(days=30, today=date(2024, 7, 1)) == []


def test_bad_funnel_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="by: must be one of campaign, broadcast, transactional"):
        funnel_query("newsletter", None, None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="days: must be at least 1"):
        funnel_query("campaign", 0, None, None)
