"""A wrong region (issue 13): refused at a worker's start, paused (never dead-lettered) at run
time, resumed by a probe that is delivered.

The clients here are the real ones over ``httpx.MockTransport`` (what Customer.io answers is
scripted per request); test_region_emulator.py runs the same against the emulator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from cio_relay import operations as ops
from cio_relay.customerio import AsyncAppClient, AsyncTrackClient
from cio_relay.customerio.core import classify_response
from cio_relay.delivery.dispatcher import Dispatcher, DispatcherConfig
from cio_relay.delivery.hooks import Hooks
from cio_relay.delivery.outcomes import Pause, judge_failure, refused_whole
from cio_relay.delivery.region import RegionGate, account_region, confirm_region
from cio_relay.delivery.retry import RetryPolicy
from cio_relay.errors import ConfigError, PermanentError, WrongRegionError
from cio_relay.observability.metrics import Metrics
from cio_relay.outbox.memory import MemoryOutbox

FAST = RetryPolicy(base=0.001, cap=0.01, max_attempts=3)
WRONG_DATACENTER = {"errors": [{"detail": "wrong datacenter", "status": "301"}]}
EU_TRACK = "https://track-eu.customer.io"
Answer = Callable[[httpx.Request], httpx.Response]


class Scripted:
    """A MockTransport answering with ``answer`` and recording each request."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]


def _track(scripted: Scripted, region: str = "us") -> AsyncTrackClient:
    return AsyncTrackClient("site", "track-key", region=region, transport=scripted.transport)


def _app(scripted: Scripted, region: str = "us") -> AsyncAppClient:
    return AsyncAppClient("app-key", region=region, transport=scripted.transport)


def _dispatcher(outbox: MemoryOutbox, track: Any = None, app: Any = None, **kw: Any) -> Dispatcher:
    return Dispatcher(
        outbox,
        track,
        app,
        policy=FAST,
        config=DispatcherConfig(idle_wait=0.001, lease_seconds=30.0),
        **kw,
    )


def _email(n: int = 0) -> ops.Operation:
    return ops.send_email(
        to=f"p{n}@example.com", identifiers={"id": f"p{n}"}, transactional_message_id=1
    )


# --- classification -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "location", "region"),
    [
        (301, f"{EU_TRACK}/api/v2/batch", "us"),
        (302, "https://api-eu.customer.io/v1/send/email", "us"),
        (301, "https://track.customer.io/api/v2/batch", "eu"),
    ],
)
def test_a_redirect_to_the_other_regions_host_is_a_wrong_region(
    status: int, location: str, region: str
) -> None:
    with pytest.raises(WrongRegionError) as caught:
        classify_response(
            status, {"Location": location}, b"", endpoint="POST /api/v2/batch", region=region
        )
    assert caught.value.region == region
    assert "CUSTOMERIO_REGION" in str(caught.value)


@pytest.mark.parametrize(
    ("location", "region"),
    [
        ("https://track.customer.io/api/v2/batch", "us"),  # its own region's host
        ("https://elsewhere.test/x", "us"),
        (f"{EU_TRACK}/api/v2/batch", None),  # the client's region unknown: cannot tell
    ],
)
def test_other_redirects_stay_plain_permanent_errors(location: str, region: str | None) -> None:
    with pytest.raises(PermanentError) as caught:
        classify_response(301, {"Location": location}, b"", endpoint="POST /x", region=region)
    assert type(caught.value) is PermanentError


def test_a_wrong_region_pauses_and_is_never_bisected() -> None:
    error = WrongRegionError("wrong datacenter", status=301, region="us")
    assert judge_failure(_email(), error, may_resend=False) == Pause(str(error))
    assert not refused_whole(error)


@pytest.mark.parametrize(
    ("answer", "region"),
    [
        ({"url": EU_TRACK, "region": "eu", "environment_id": 3}, "eu"),
        ({"region": "US"}, "us"),
        ({"region": "ap"}, None),
        ({"url": EU_TRACK}, None),
        (["eu"], None),
        (None, None),
    ],
)
def test_account_region_reads_the_documented_region_key(answer: Any, region: str | None) -> None:
    assert account_region(answer) == region


# --- the start-up check -------------------------------------------------------------------------


def _region_answer(body: Any, status: int = 200) -> Answer:
    return lambda request: httpx.Response(status, json=body)


async def _confirm(answer: Answer, configured: str = "us", **kw: Any) -> tuple[bool, RegionGate]:
    gate = RegionGate()
    scripted = Scripted(answer)
    async with _track(scripted, configured) as track:
        confirmed = await confirm_region(track, configured, gate, delays=iter([0.0] * 10), **kw)
    assert scripted.paths()[0] == "/api/v1/accounts/region"
    return confirmed, gate


async def test_the_configured_region_is_confirmed() -> None:
    confirmed, gate = await _confirm(_region_answer({"region": "us", "url": "x"}))
    assert confirmed and gate.status() == "ok"


async def test_another_region_refuses_to_start_in_one_line_naming_both() -> None:
    metrics = Metrics()
    hooks = Hooks()
    metrics.subscribe(hooks)
    gate = RegionGate(hooks)
    scripted = Scripted(_region_answer({"region": "eu", "url": EU_TRACK}))
    async with _track(scripted) as track:
        with pytest.raises(ConfigError) as caught:
            await confirm_region(track, "us", gate)
    message = str(caught.value)
    assert "'eu'" in message and "'us'" in message and "CUSTOMERIO_REGION=eu" in message
    assert "\n" not in message
    assert gate.status() == "paused: wrong region (app, track)"
    assert 'cio_relay_region_mismatch{api="track"} 1.0' in metrics.render().decode()


async def test_refused_credentials_are_a_config_error() -> None:
    answer = _region_answer({"meta": {"error": "Unauthorized request"}}, 401)
    with pytest.raises(ConfigError, match="refused the Track credentials"):
        await _confirm(answer)


async def test_no_answer_is_tried_again_until_there_is_one() -> None:
    answers: Iterator[httpx.Response | Exception] = iter(
        [httpx.ConnectError("refused"), httpx.Response(503), httpx.Response(429)]
    )

    def flaky(request: httpx.Request) -> httpx.Response:
        outcome = next(answers, None)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome or httpx.Response(200, json={"region": "us"})

    confirmed, gate = await _confirm(flaky)
    assert confirmed and gate.status() == "ok"


async def test_a_stop_while_waiting_for_an_answer_starts_nothing() -> None:
    stop = asyncio.Event()

    def down(request: httpx.Request) -> httpx.Response:
        stop.set()
        raise httpx.ConnectError("refused")

    confirmed, gate = await _confirm(down, stop=stop)
    assert not confirmed and gate.status() == "ok"


@pytest.mark.parametrize(
    "answer",
    [_region_answer({"error": "not found"}, 404), _region_answer({"environment_id": 3})],
    ids=["404", "no-region"],
)
async def test_an_answer_that_names_no_region_lets_delivery_start(answer: Answer) -> None:
    confirmed, gate = await _confirm(answer)
    assert confirmed and gate.status() == "ok"


# --- pausing at run time -------------------------------------------------------------------------


def _observed() -> tuple[Hooks, Metrics, list[tuple[str, str]]]:
    hooks, metrics = Hooks(), Metrics()
    metrics.subscribe(hooks)
    dead: list[tuple[str, str]] = []
    hooks.on_dead(lambda op, reason, detail: dead.append((reason, detail)))
    return hooks, metrics, dead


async def _run_until(dispatcher: Dispatcher, ready: asyncio.Event) -> None:
    """Run ``dispatcher`` until ``ready`` is set, then stop it gracefully."""
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    try:
        await asyncio.wait_for(ready.wait(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)


async def test_app_sends_answered_wrong_datacenter_stay_in_the_outbox_and_pause_the_app_api() -> (
    None
):
    outbox = MemoryOutbox()
    outbox.enqueue([_email(n) for n in range(5)])
    hooks, metrics, dead = _observed()
    paused = asyncio.Event()
    hooks.on_region_mismatch(lambda api, detail: paused.set())
    scripted = Scripted(lambda request: httpx.Response(301, json=WRONG_DATACENTER))
    gate = RegionGate(hooks, probe_first=60.0, probe_most=60.0)
    async with _app(scripted) as app:
        dispatcher = _dispatcher(outbox, app=app, hooks=hooks, region=gate)
        await _run_until(dispatcher, paused)
    depth = outbox.depth()
    assert (depth.pending, depth.dead) == (5, 0) and dead == []
    assert gate.status() == "paused: wrong region (app)"
    assert 'cio_relay_region_mismatch{api="app"} 1.0' in metrics.render().decode()
    # Only what was on the wire when the first answer came: the rest was never sent.
    assert 1 <= len(scripted.requests) <= dispatcher.config.concurrency
    assert dispatcher.stats.held == 5 and dispatcher.stats.dead_total == 0


async def test_a_track_batch_redirected_to_the_other_region_is_held_whole_not_bisected() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue([ops.track(f"u{n}", "e") for n in range(40)])
    hooks, _metrics, dead = _observed()
    paused = asyncio.Event()
    hooks.on_region_mismatch(lambda api, detail: paused.set())
    scripted = Scripted(
        lambda request: httpx.Response(301, headers={"Location": f"{EU_TRACK}{request.url.path}"})
    )
    gate = RegionGate(hooks, probe_first=60.0, probe_most=60.0)
    async with _track(scripted) as track:
        await _run_until(_dispatcher(outbox, track, hooks=hooks, region=gate), paused)
    assert scripted.paths() == ["/api/v2/batch"]  # one request: no halves
    assert outbox.depth().pending == 40 and dead == []
    assert gate.status() == "paused: wrong region (track)"


async def test_drain_says_why_it_cannot_finish_and_keeps_the_operations() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue([_email()])
    scripted = Scripted(lambda request: httpx.Response(301, json=WRONG_DATACENTER))
    async with _app(scripted) as app:
        with pytest.raises(ConfigError, match=r"paused.*wrong datacenter"):
            await _dispatcher(outbox, app=app).drain(timeout=10)
    assert outbox.depth().pending == 1 and outbox.depth().dead == 0


async def test_a_held_send_is_not_taken_for_one_a_crashed_worker_left_mid_send() -> None:
    # The send was marked before it went out; the wrong-region answer says it was not processed,
    # so the mark must go, or the next lease would dead-letter it as ambiguous.
    outbox = MemoryOutbox()
    outbox.enqueue([_email()])
    scripted = Scripted(lambda request: httpx.Response(301, json=WRONG_DATACENTER))
    gate = RegionGate(probe_first=0.01, probe_most=0.01)
    async with _app(scripted) as app:
        with pytest.raises(ConfigError):
            await _dispatcher(outbox, app=app, region=gate).drain(timeout=10)
    [lease] = outbox.lease(10, 30.0, now=time.time() + 60)  # once the hold is over
    assert lease.last_error is not None and "wrong datacenter" in lease.last_error


async def test_a_delivered_probe_resumes_the_family_and_everything_is_delivered() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue([_email(n) for n in range(6)])
    hooks, metrics, dead = _observed()
    answers: Iterator[int] = iter([301] * 3)  # then the proxy in front is fixed
    delivered: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if next(answers, 200) == 301:
            return httpx.Response(301, json=WRONG_DATACENTER)
        return httpx.Response(200, json={"delivery_id": "d", "queued_at": 1})

    finished = asyncio.Event()

    def count(op: ops.Operation, latency: float) -> None:
        delivered.append(op.op_id)
        if len(delivered) == 6:
            finished.set()

    hooks.on_delivered(count)
    resumed: list[str] = []
    hooks.on_region_resolved(resumed.append)
    gate = RegionGate(hooks, probe_first=0.02, probe_most=0.02)
    async with _app(Scripted(answer)) as app:
        await _run_until(_dispatcher(outbox, app=app, hooks=hooks, region=gate), finished)
    assert resumed == ["app"] and gate.status() == "ok"
    assert outbox.depth().pending == 0 and dead == []
    assert 'cio_relay_region_mismatch{api="app"} 0.0' in metrics.render().decode()


async def test_a_paused_family_does_not_hold_back_the_other() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue([_email(), ops.track("u1", "e"), ops.track("u2", "e")])
    finished = asyncio.Event()
    hooks = Hooks()
    delivered: list[str] = []

    def count(op: ops.Operation, latency: float) -> None:
        delivered.append(op.kind.value)
        if len(delivered) == 2:
            finished.set()

    hooks.on_delivered(count)
    gate = RegionGate(hooks, probe_first=60.0, probe_most=60.0)
    app_api = Scripted(lambda request: httpx.Response(301, json=WRONG_DATACENTER))
    track_api = Scripted(lambda request: httpx.Response(200, json={}))
    async with _app(app_api) as app, _track(track_api) as track:
        await _run_until(_dispatcher(outbox, track, app, hooks=hooks, region=gate), finished)
    assert delivered == ["track", "track"]
    assert gate.status() == "paused: wrong region (app)"
    assert outbox.depth().pending == 1


def test_while_every_family_is_paused_nothing_is_leased_until_a_probe_is_due() -> None:
    now = [100.0]
    gate = RegionGate(probe_first=30.0, probe_most=30.0, clock=lambda: now[0])
    assert gate.idle_for(["track", "app"]) is None
    gate.pause("app", "wrong datacenter")
    assert gate.idle_for(["track", "app"]) is None  # Track still delivers: lease on
    assert gate.idle_for(["app"]) == pytest.approx(30.0, abs=15.0)  # drawn from [15, 30]
    assert not gate.admits("app")
    now[0] += 30.0
    assert gate.idle_for(["app"]) is None and gate.admits("app")  # the probe goes
    assert not gate.admits("app")  # and only one
    assert gate.idle_for(["app"]) is not None
