"""``cio-relay worker`` and its outbox's outages: it waits for an outbox it cannot reach yet,
rides out one that goes away while it runs, and stops early only for settings that cannot work;
``cio-relay run`` waits for an outbox it cannot reach yet too.

Real ``redis-server`` processes (tests/fixtures/redis_server.py) and the emulator; the worker is
a child process. Nothing sleeps: the tests wait on the worker's log lines and on what the
emulator received.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx

from cio_relay.emulator import EmulatorServer
from cio_relay.outbox.redis import RedisOutbox
from cio_relay.relay import Relay
from tests.cli.helpers import Child, wait_for, worker_env
from tests.fixtures.delivery import emulator_settings
from tests.fixtures.redis_server import DURABLE_ARGS, RedisServer, free_port

DEADLINE = 60.0


def _accepted(emulator: EmulatorServer) -> int:
    count: int = httpx.get(f"{emulator.url}/_emulator/stats").json()["events_accepted"]
    return count


def test_a_worker_started_before_its_redis_waits_for_it_then_delivers(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    redis = RedisServer(tmp_path)
    redis.port = free_port()  # where Redis will be, once it is started
    child = Child(["worker"], cwd=tmp_path, env=worker_env(emulator, redis.url))
    try:
        child.read_log_until("the outbox cannot be opened (ConnectionError)", DEADLINE)
        assert child.proc.poll() is None  # waiting, not exited
        redis.start()
        with Relay(emulator_settings(emulator, redis.url)) as relay:
            for n in range(10):
                relay.track(f"p{n}", "signed_up")
        assert wait_for(lambda: _accepted(emulator) == 10, DEADLINE), child.output
    finally:
        code = child.stop(DEADLINE)
        redis.stop()
    assert code == 0, child.output


def test_a_worker_rides_out_a_redis_restart_and_delivers_everything_once(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    redis = RedisServer(tmp_path, *DURABLE_ARGS).start()
    child = Child(["worker"], cwd=tmp_path, env=worker_env(emulator, redis.url))
    try:
        with Relay(emulator_settings(emulator, redis.url)) as relay:
            for n in range(20):
                relay.track(f"p{n}", "before")
        assert wait_for(lambda: _accepted(emulator) == 20, DEADLINE), child.output
        redis.kill()
        child.read_log_until("the outbox failed (ConnectionError", DEADLINE)
        redis.restart()  # same port and directory: the append-only file brings the data back
        with Relay(emulator_settings(emulator, redis.url)) as relay:
            for n in range(20):
                relay.track(f"p{n}", "after")
        child.read_log_until("the outbox answers again", DEADLINE)
        assert wait_for(lambda: _accepted(emulator) == 40, DEADLINE), child.output
        outbox = RedisOutbox(redis.url)
        try:
            assert outbox.depth().pending == 0
        finally:
            outbox.close()
    finally:
        code = child.stop(DEADLINE)
        redis.stop()
    assert code == 0, child.output
    events = httpx.get(f"{emulator.url}/_emulator/events", params={"limit": 100}).json()
    assert sorted(e["name"] for e in events["events"]) == ["after"] * 20 + ["before"] * 20


def test_a_worker_whose_settings_cannot_work_stops_at_once_with_status_2(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    for env in (
        worker_env(emulator, "ftp://nowhere/outbox"),
        worker_env(emulator, "sqlite:///outbox.db", CIO_RELAY_LEASE_SECONDS="soon"),
    ):
        child = Child(["worker"], cwd=tmp_path, env=env)
        child.proc.wait(DEADLINE)
        code = child.stop(DEADLINE)
        assert code == 2, child.output
        assert "configuration error" in child.output and "Traceback" not in child.output
    assert "soon" not in child.output  # the given values are not echoed (they may be secrets)


def test_cio_relay_run_started_before_its_redis_waits_for_it_then_serves_and_delivers(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    redis = RedisServer(tmp_path)
    redis.port = free_port()
    api_key = secrets.token_urlsafe(32)
    env = worker_env(emulator, redis.url, CIO_RELAY_API_KEYS=api_key)
    child = Child(["run", "--port", "0"], cwd=tmp_path, env=env)
    try:
        child.read_log_until("the outbox cannot be opened (ConnectionError)", DEADLINE)
        assert child.proc.poll() is None  # waiting, not exited
        redis.start()
        banner = child.read_until("Delivering until Ctrl-C", DEADLINE)
        found = re.search(r"Dashboard: (http://127\.0\.0\.1:\d+)/dashboard", banner)
        assert found is not None, banner
        accepted = httpx.post(
            f"{found.group(1)}/v1/people/ada/events",
            json={"name": "signed_up"},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert accepted.status_code == 202, accepted.text
        assert wait_for(lambda: _accepted(emulator) == 1, DEADLINE), child.output
    finally:
        code = child.stop(DEADLINE)
        redis.stop()
    assert code == 0, child.output
    assert api_key not in child.output
