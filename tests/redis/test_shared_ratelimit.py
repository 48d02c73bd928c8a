"""The shared rate limiter: one GCRA limit in Redis for every worker, pauses seen by all.

"Workers" here are limiters on their own Redis connections and event loops in threads; the
end-to-end test (test_many_workers.py) runs real worker processes against the emulator. The
limiters run on a fake clock (``tests/fixtures/fake_clock.py``) that the slots in Redis are
reserved on too, so each test asserts exact waits and slots, not measured ones.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from cio_relay.config import Settings
from cio_relay.delivery.ratelimit import Sleep
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
from tests.fixtures.fake_clock import FakeClock
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


class Limiter(SharedRateLimiter):
    """Records each reservation: when it was asked (on the limiter's clock) and the wait Redis
    answered. More reservations than acquires means slots were left unused."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.reserved_at: list[float] = []
        self.answers: list[float] = []

    def _reserve(self) -> float:
        self.reserved_at.append(self.clock())
        wait = super()._reserve()
        self.answers.append(wait)
        return wait


def _on(clock: FakeClock, client: redis.Redis, key: str, rate: float, **options: Any) -> Limiter:
    return Limiter(client, key, rate, clock=clock, sleep=clock.sleep, **options)


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _since(clock: FakeClock, started: float) -> int:
    """Microseconds the clock moved since ``started``."""
    return _micros(clock() - started)


def test_workers_together_get_slots_one_interval_apart(
    clients: list[redis.Redis], key: str
) -> None:
    """Four workers (own connections, own event loops), twenty senders each, all asking at the
    same instant: the eighty slots are distinct and exactly one interval apart, so no second
    holds more than the limit."""
    rate, per_worker = 40.0, 20
    clock = FakeClock()  # stands still (the sleeps take no time): every sender asks at once
    limiters = [
        Limiter(client, key, rate, headroom=0.05, clock=clock, sleep=_no_wait) for client in clients
    ]

    def worker(limiter: Limiter) -> None:
        async def send_all() -> None:
            await asyncio.gather(*(limiter.acquire() for _ in range(per_worker)))

        asyncio.run(send_all())

    threads = [threading.Thread(target=worker, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slots = sorted(_micros(wait) for limiter in limiters for wait in limiter.answers)
    interval = round(1_000_000 / (rate * 0.95))
    assert slots == [k * interval for k in range(80)]  # one reservation per send, none lost
    assert most_in_one_second([slot / 1_000_000 for slot in slots]) == 38  # 40 * 0.95


async def _no_wait(seconds: float) -> None:
    """A sleep that takes no time on a clock that stands still."""
    await asyncio.sleep(0)


def test_a_pause_seen_by_one_worker_slows_every_worker(
    clients: list[redis.Redis], key: str
) -> None:
    clock = FakeClock()
    saw_429 = _on(clock, clients[0], key, 100.0)
    other = _on(clock, clients[1], key, 100.0)
    saw_429.pause_for(0.4)  # outside an event loop: stored in Redis at once
    assert asyncio.run(other.acquire()) == pytest.approx(0.4)  # other never saw the 429
    assert asyncio.run(other.acquire()) == pytest.approx(0.01)  # the pause is over: the rate


async def test_the_worker_that_saw_the_429_stops_before_redis_knows(
    clients: list[redis.Redis], key: str
) -> None:
    clock = FakeClock()
    limiter = _on(clock, clients[0], key, 100.0)
    started = clock()
    limiter.pause_for(0.3)  # in a running loop: Redis is told from a thread
    assert await limiter.acquire() == pytest.approx(0.3)
    assert _since(clock, started) == 300_000
    assert limiter.reserved_at == [clock()]  # asked Redis only once the pause was over


def test_burst_lets_that_many_go_at_once(clients: list[redis.Redis], key: str) -> None:
    clock = FakeClock()
    limiter = _on(clock, clients[0], key, 10.0, burst=3)

    async def four() -> list[float]:
        return [await limiter.acquire() for _ in range(4)]

    assert asyncio.run(four()) == pytest.approx([0.0, 0.0, 0.0, 0.1])


def _waking_late(clock: FakeClock, by: float) -> Sleep:
    """The clock's sleep, except that the first sleeper wakes ``by`` seconds late (its process
    stalled: a GC pause, a busy CPU)."""
    late = [by]

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        clock.advance(late.pop() if late else 0.0)

    return sleep


async def _second_sender_late_by(
    clock: FakeClock,
    client: redis.Redis,
    key: str,
    rate: float,
    late: float,
    headroom: float = 0.1,
) -> Limiter:
    """Two senders ask at once; the second's slot is one interval on, and it wakes ``late``
    seconds after it."""
    sleep = _waking_late(clock, late)
    limiter = Limiter(client, key, rate, headroom=headroom, clock=clock, sleep=sleep)
    await asyncio.gather(limiter.acquire(), limiter.acquire())
    return limiter


async def test_a_sender_a_little_late_keeps_its_slot_at_a_high_rate(
    clients: list[redis.Redis], key: str
) -> None:
    # 100 requests/s with 10 % headroom: slots 11.1 ms apart, a jitter budget of 111 ms, so a
    # sender may wake up to 55.5 ms after its slot and still go.
    clock = FakeClock()
    started = clock()
    limiter = await _second_sender_late_by(clock, clients[0], key, 100.0, late=0.05)
    assert limiter.reserved_at == [started, started]  # the late sender went on its own slot
    assert _since(clock, started) == 11_111 + 50_000


async def test_a_sender_late_past_half_the_budget_takes_a_new_slot(
    clients: list[redis.Redis], key: str
) -> None:
    # The same at 56 ms late: going now would bunch with the holders of the next slots.
    clock = FakeClock()
    started = clock()
    limiter = await _second_sender_late_by(clock, clients[0], key, 100.0, late=0.056)
    assert limiter.reserved_at[:2] == [started, started]
    assert _since(clock, limiter.reserved_at[2]) == 0  # asked again on waking, late by 56 ms
    assert _since(clock, started) == 11_111 + 56_000  # and went at once: the new slot had passed


async def test_at_a_low_rate_a_late_sender_waits_for_the_next_slot(
    clients: list[redis.Redis], key: str
) -> None:
    # 2 requests/s with 10 % headroom: slots 556 ms apart, and still 55.5 ms of slack (half an
    # interval would let a late sender go out almost on top of the next slot).
    clock = FakeClock()
    started = clock()
    limiter = await _second_sender_late_by(clock, clients[0], key, 2.0, late=0.06)
    assert len(limiter.reserved_at) == 3  # the late sender gave its slot up
    assert _since(clock, started) == pytest.approx(2 * 555_556, abs=1)  # went on the one after


@pytest.mark.parametrize(("late", "reservations"), [(0.024, 2), (0.026, 3)])
async def test_without_headroom_a_sender_may_be_half_an_interval_late(
    clients: list[redis.Redis], key: str, late: float, reservations: int
) -> None:
    # 20 requests/s, no headroom: no jitter budget, slots 50 ms apart, 25 ms of slack.
    clock = FakeClock()
    limiter = await _second_sender_late_by(clock, clients[0], key, 20.0, late, headroom=0.0)
    assert len(limiter.reserved_at) == reservations


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
    assert 0 < clients[0].pttl(key) <= 1100  # a second past the last slot (100 ms on)


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
