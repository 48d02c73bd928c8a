"""The shared rate limiter: one GCRA limit in Redis for every worker, pauses seen by all.

"Workers" here are limiters on their own Redis connections and event loops in threads; the
end-to-end test (test_many_workers.py) runs real worker processes against the emulator.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from cio_relay.config import Settings
from cio_relay.delivery.shared_ratelimit import (
    SharedRateLimiter,
    jitter_budget,
    redis_limiters,
    shared_limiters_for,
)
from cio_relay.operations import Api
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.outbox.redis import RedisOutbox
from tests.fixtures.delivery import most_in_one_second
from tests.fixtures.redis_server import RedisServer


@pytest.fixture
def key(redis_namespace: str) -> str:
    return f"{{{redis_namespace}:ratelimit:test:track}}"


@pytest.fixture
def clients(redis_server: RedisServer) -> Iterator[list[redis.Redis]]:
    made = [redis_server.client() for _ in range(4)]
    yield made
    for client in made:
        client.close()


def test_workers_together_stay_under_the_limit(clients: list[redis.Redis], key: str) -> None:
    rate, per_worker = 40.0, 20
    granted: list[float] = []
    lock = threading.Lock()

    def worker(client: redis.Redis) -> None:
        limiter = SharedRateLimiter(client, key, rate, headroom=0.05)

        async def send_all() -> None:
            async def one() -> None:
                await limiter.acquire()
                with lock:
                    granted.append(time.monotonic())

            await asyncio.gather(*(one() for _ in range(per_worker)))  # 20 senders at once

        asyncio.run(send_all())

    threads = [threading.Thread(target=worker, args=(client,)) for client in clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 80
    assert most_in_one_second(granted) <= rate
    # 80 requests at 38/s, one at once: the last cannot go before 79 intervals have passed
    assert max(granted) - started >= 79 / (rate * 0.95) - 0.01


def test_a_pause_seen_by_one_worker_slows_every_worker(
    clients: list[redis.Redis], key: str
) -> None:
    saw_429 = SharedRateLimiter(clients[0], key, 100.0)
    other = SharedRateLimiter(clients[1], key, 100.0)
    saw_429.pause_for(0.4)  # outside an event loop: stored in Redis at once
    assert asyncio.run(other.acquire()) >= 0.39
    assert asyncio.run(other.acquire()) < 0.39  # the pause is over


async def test_the_worker_that_saw_the_429_stops_before_redis_knows(
    clients: list[redis.Redis], key: str
) -> None:
    limiter = SharedRateLimiter(clients[0], key, 100.0)
    limiter.pause_for(0.3)  # in a running loop: Redis is told from a thread
    assert await limiter.acquire() >= 0.29


def test_burst_lets_that_many_go_at_once(clients: list[redis.Redis], key: str) -> None:
    limiter = SharedRateLimiter(clients[0], key, 10.0, burst=3)

    async def four() -> list[float]:
        return [await limiter.acquire() for _ in range(4)]

    waits = asyncio.run(four())
    assert max(waits[:3]) < 0.05  # a round trip each, no waiting for a slot
    assert waits[3] > 0.05


async def test_senders_that_wake_late_take_new_slots_instead_of_bunching(
    clients: list[redis.Redis], key: str
) -> None:
    limiter = SharedRateLimiter(clients[0], key, 20.0)  # slots 50 ms apart, 25 ms of slack
    done: list[float] = []

    async def send() -> None:
        await limiter.acquire()
        done.append(time.monotonic())
        if len(done) == 1:
            # The event loop stalls for 200 ms (as in a GC pause) while the next three senders'
            # slots pass: a busy loop, not a sleep, so that nothing else runs meanwhile.
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                pass

    await asyncio.gather(*(send() for _ in range(6)))
    gaps = [b - a for a, b in itertools.pairwise(done)]
    assert min(gaps) > 0.02, gaps  # without the guard, three would go out at once


class _CountingLimiter(SharedRateLimiter):
    """Counts reservations: more than one per acquire means slots were left unused."""

    reservations = 0

    def _reserve(self) -> float:
        self.reservations += 1
        return super()._reserve()


async def _two_senders_late_by(limiter: SharedRateLimiter, stall: float) -> list[float]:
    """When each of two senders was granted. Both reserve at once; the first, granted at once,
    stalls the event loop for ``stall`` seconds (a busy loop, as in a GC pause), so the second
    begins its wait that late and wakes ``stall`` after its slot."""
    granted: list[float] = []

    async def send() -> None:
        await limiter.acquire()
        granted.append(time.monotonic())
        if len(granted) == 1:
            end = time.monotonic() + stall
            while time.monotonic() < end:
                pass

    await asyncio.gather(send(), send())
    return granted


async def test_a_sender_a_little_late_keeps_its_slot_at_a_high_rate(
    clients: list[redis.Redis], key: str
) -> None:
    # 100 requests/s with 10 % headroom: slots 11 ms apart, a jitter budget of 111 ms, so a
    # sender may wake up to 55 ms after its slot. Half an interval (5.5 ms) threw most slots of
    # a busy worker away.
    limiter = _CountingLimiter(clients[0], key, 100.0, headroom=0.1)
    granted = await _two_senders_late_by(limiter, 0.03)
    assert limiter.reservations == 2  # the late sender went on its own slot
    assert granted[1] - granted[0] < 0.045


async def test_a_sender_late_past_half_the_budget_takes_a_new_slot_at_a_low_rate(
    clients: list[redis.Redis], key: str
) -> None:
    # 2 requests/s with 10 % headroom: slots 556 ms apart, a sender may wake up to 55 ms late.
    # Half an interval (278 ms) let a late sender go out almost on top of the next slot.
    limiter = _CountingLimiter(clients[0], key, 2.0, headroom=0.1)
    granted = await _two_senders_late_by(limiter, 0.15)
    assert limiter.reservations == 3  # the late sender gave its slot up
    assert granted[1] - granted[0] > 1.0  # and went on the slot after (at 1,111 ms)


def test_the_jitter_budget_keeps_any_window_at_the_limit() -> None:
    """Slots 1 / (rate (1 - headroom)) apart, each request up to the budget late: the densest
    second (or window of 1 / rate) holds at most the limit."""
    for rate, headroom in [(100.0, 0.1), (20.0, 0.1), (40.0, 0.05), (0.1, 0.1)]:
        interval = 1 / (rate * (1 - headroom))
        window = max(1.0, 1 / rate)
        late = jitter_budget(rate, headroom) * 0.999
        slots = [k * interval for k in range(int(10 * window / interval))]
        # Worst case: every other request as late as allowed, the rest on time.
        arrivals = sorted(slot + (late if k % 2 else 0.0) for k, slot in enumerate(slots))
        densest = max(sum(1 for t in arrivals if start <= t < start + window) for start in arrivals)
        assert densest <= max(1, rate * window), (rate, headroom, densest)


def test_the_limit_leaves_nothing_behind_once_idle(clients: list[redis.Redis], key: str) -> None:
    limiter = SharedRateLimiter(clients[0], key, 10.0)
    asyncio.run(limiter.acquire())
    assert 0 < clients[0].pttl(key) <= 1200


def test_redis_limiters_cover_every_api_family_per_workspace(
    clients: list[redis.Redis],
) -> None:
    settings = Settings(site_id="site-a", track_rate=50, transactional_rate=20)
    limiters = redis_limiters(settings, clients[0])
    assert set(limiters) == {Api.TRACK, Api.TRANSACTIONAL, Api.BROADCAST}
    track = limiters[Api.TRACK]
    assert isinstance(track, SharedRateLimiter)
    assert track.rate == 50
    assert limiters[Api.BROADCAST].rate == 1 / settings.broadcast_interval  # type: ignore[attr-defined]
    other_site = redis_limiters(Settings(site_id="site-b"), clients[0])[Api.TRACK]
    assert isinstance(other_site, SharedRateLimiter)
    assert other_site.key != track.key
    assert "site-a" not in track.key  # the site id is hashed, not written out


def test_shared_limiters_go_with_a_redis_outbox_only(redis_outbox: RedisOutbox) -> None:
    settings = Settings(site_id="site-a")
    limiters = shared_limiters_for(settings, redis_outbox)
    assert limiters is not None
    assert all(isinstance(limiter, SharedRateLimiter) for limiter in limiters.values())
    assert shared_limiters_for(settings, MemoryOutbox()) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 0}, "rate must be positive, got 0"),
        ({"rate": 1, "burst": 0}, "burst must be at least 1, got 0"),
        ({"rate": 1, "headroom": 1.0}, r"headroom must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_limits_are_refused(
    clients: list[redis.Redis], key: str, options: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SharedRateLimiter(clients[0], key, **options)  # type: ignore[arg-type]
