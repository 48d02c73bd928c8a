"""Retry policy, batching by bytes and the token bucket (on a fake clock): the pure parts of
delivery."""

from __future__ import annotations

import asyncio
import random

import orjson

from cio_relay.delivery.batching import ENVELOPE_BYTES, pack
from cio_relay.delivery.ratelimit import TokenBucket
from cio_relay.delivery.retry import RetryPolicy
from tests.fixtures.fake_clock import FakeClock


def test_backoff_is_full_jitter_within_an_exponential_window() -> None:
    policy = RetryPolicy(base=1.0, cap=30.0, rng=random.Random(7))
    for attempts, window in [(0, 1.0), (1, 2.0), (3, 8.0), (10, 30.0)]:
        delays = [policy.delay(attempts) for _ in range(200)]
        assert max(delays) <= window
        assert min(delays) < window / 4  # spread over the window, not clustered at the top
        assert max(delays) > window * 3 / 4


def test_retry_after_is_a_floor_capped_by_the_policy() -> None:
    policy = RetryPolicy(base=0.01, cap=60.0)
    assert policy.delay(0, retry_after=5.0) >= 5.0
    assert policy.delay(0, retry_after=3600.0) == 60.0


def test_attempt_and_age_caps() -> None:
    policy = RetryPolicy(max_attempts=3, max_age=100.0)
    assert not policy.exhausted(2)
    assert policy.exhausted(3)
    assert not policy.too_old(created_at=1000.0, now=1100.0)
    assert policy.too_old(created_at=1000.0, now=1100.5)


def test_pack_keeps_order_and_every_batch_under_the_budget() -> None:
    items = [(i, orjson.dumps({"n": i, "pad": "x" * (i % 50)})) for i in range(1000)]
    budget = 2_000
    batches = list(pack(items, budget))
    assert [tag for batch in batches for tag, _ in batch] == list(range(1000))
    for batch in batches:
        body = b'{"batch":[' + b",".join(item for _, item in batch) + b"]}"
        assert len(body) <= budget
    assert len(batches) > 1


def test_pack_fills_batches_rather_than_splitting_early() -> None:
    item = orjson.dumps({"x": "y" * 96})  # 106 bytes
    batches = list(pack([(i, item) for i in range(100)], 10 * 107 + ENVELOPE_BYTES))
    assert [len(b) for b in batches] == [10] * 10


def _bucket(rate: float, burst: float, clock: FakeClock) -> TokenBucket:
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)


async def test_token_bucket_paces_requests_to_its_rate() -> None:
    clock = FakeClock()
    bucket = _bucket(4.0, 1.0, clock)
    waits = [await bucket.acquire() for _ in range(5)]
    assert waits == [0.0, 0.25, 0.25, 0.25, 0.25]  # one token each quarter second
    assert bucket.tokens() == 0.0


async def test_token_bucket_lets_a_burst_go_at_once_then_refills_up_to_it() -> None:
    clock = FakeClock()
    bucket = _bucket(4.0, 3.0, clock)
    assert [await bucket.acquire() for _ in range(4)] == [0.0, 0.0, 0.0, 0.25]
    clock.advance(0.5)
    assert bucket.tokens() == 2.0
    clock.advance(60.0)
    assert bucket.tokens() == 3.0  # an idle minute saves no more than the burst


async def test_waiters_are_served_in_arrival_order_each_waiting_from_its_call() -> None:
    clock = FakeClock()
    bucket = _bucket(4.0, 1.0, clock)
    waits = await asyncio.gather(*(bucket.acquire() for _ in range(3)))
    assert waits == [0.0, 0.25, 0.5]  # the third queued behind the second's wait, then its own
    assert clock.sleeps == [0.25, 0.25]


async def test_pause_for_holds_every_caller_then_refills_from_empty() -> None:
    clock = FakeClock()
    bucket = _bucket(4.0, 3.0, clock)
    bucket.pause_for(0.5)
    assert bucket.tokens() == 0.0
    # The pause, then a quarter second for the first token: the burst was spent by the pause.
    assert await bucket.acquire() == 0.75
    assert clock.sleeps == [0.5, 0.25]


async def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    clock = FakeClock()
    bucket = _bucket(4.0, 1.0, clock)
    bucket.pause_for(2.0)
    bucket.pause_for(0.5)
    bucket.pause_for(0.0)
    assert await bucket.acquire() == 2.25
