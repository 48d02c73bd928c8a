"""Retry policy, batching by bytes and the token bucket: the pure parts of delivery."""

from __future__ import annotations

import random
import time

import orjson

from cio_relay.delivery.batching import ENVELOPE_BYTES, pack
from cio_relay.delivery.ratelimit import TokenBucket
from cio_relay.delivery.retry import RetryPolicy


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


async def test_token_bucket_paces_requests_to_its_rate() -> None:
    bucket = TokenBucket(rate=200.0, burst=1.0)
    started = time.monotonic()
    for _ in range(21):
        await bucket.acquire()
    elapsed = time.monotonic() - started
    assert elapsed >= 20 / 200 * 0.9  # 20 waits of 5 ms after the first token


async def test_pause_for_holds_every_caller() -> None:
    bucket = TokenBucket(rate=1000.0, burst=10.0)
    bucket.pause_for(0.05)
    started = time.monotonic()
    waited = await bucket.acquire()
    assert waited >= 0.04
    assert time.monotonic() - started >= 0.04
