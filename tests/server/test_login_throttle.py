"""``LoginThrottle``: failed logins per client and overall in a sliding window (issue 11)."""

from __future__ import annotations

import pytest

from cio_relay.server.dashboard.throttle import LoginThrottle, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _fail(throttle: LoginThrottle, client: str, times: int) -> None:
    for _ in range(times):
        assert throttle.retry_after(client) is None
        throttle.failed(client)


def test_a_client_is_held_off_after_its_limit_until_its_oldest_failure_ages_out(
    clock: Clock,
) -> None:
    throttle = LoginThrottle(per_client=3, overall=100, window=600.0, clock=clock)
    _fail(throttle, "10.0.0.1", 2)
    clock.now += 100.0
    _fail(throttle, "10.0.0.1", 1)
    assert throttle.retry_after("10.0.0.1") == 500  # the first failure leaves at +600
    assert throttle.retry_after("10.0.0.2") is None  # another client is not held off
    clock.now += 499.5
    assert throttle.retry_after("10.0.0.1") == 1  # whole seconds, never 0
    clock.now += 0.5
    assert throttle.retry_after("10.0.0.1") is None  # both failures at +0 have left
    _fail(throttle, "10.0.0.1", 2)
    assert throttle.retry_after("10.0.0.1") == 100  # the window slides: +100 leaves next


def test_every_client_is_held_off_once_the_overall_limit_is_reached(clock: Clock) -> None:
    throttle = LoginThrottle(per_client=3, overall=5, window=60.0, clock=clock)
    for number in range(5):
        _fail(throttle, f"10.0.0.{number}", 1)
    assert throttle.retry_after("10.9.9.9") == 60
    clock.now += 60.0
    assert throttle.retry_after("10.9.9.9") is None


def test_a_success_clears_the_clients_failures_but_not_the_overall_count(clock: Clock) -> None:
    throttle = LoginThrottle(per_client=2, overall=3, window=60.0, clock=clock)
    _fail(throttle, "a", 1)
    throttle.succeeded("a")
    _fail(throttle, "a", 1)
    assert throttle.retry_after("a") is None  # one failure since the success
    throttle.failed("b")
    assert throttle.retry_after("a") == 60  # three failures overall


def test_memory_stays_bounded_under_a_spray_of_addresses(clock: Clock) -> None:
    throttle = LoginThrottle(per_client=10, overall=100, window=600.0, clock=clock)
    tried = 0
    for number in range(10_000):
        client = f"10.{number // 65536}.{number // 256 % 256}.{number % 256}"
        if throttle.retry_after(client) is None:
            throttle.failed(client)
            tried += 1
    assert tried == 100
    assert len(throttle._by_client) == 100 and len(throttle._all) == 100
    clock.now += 601.0
    assert throttle.retry_after("10.0.0.1") is None
    assert not throttle._by_client and not throttle._all


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::7", "2001:db8:1:2::/64"),  # one host holds a whole /64
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_clients_are_counted_by_address_and_ipv6_by_network(host: str | None, key: str) -> None:
    assert client_key(host) == key
