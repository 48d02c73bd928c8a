"""``cio-relay worker`` in a child process: drains a SQLite outbox into the emulator, keeps
running while there is nothing to do, and stops cleanly on SIGTERM."""

from __future__ import annotations

from pathlib import Path

import httpx

from cio_relay.config import Settings
from cio_relay.emulator import EmulatorServer
from cio_relay.outbox.factory import open_outbox
from cio_relay.relay import Relay
from tests.cli.helpers import Child, wait_for, worker_env

DEADLINE = 60.0
PEOPLE = 5
EVENTS_EACH = 20


def test_worker_drains_the_outbox_into_the_emulator_then_stops_on_sigterm(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    config = emulator.config
    outbox_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    env = worker_env(emulator, outbox_url)
    with Relay(Settings(outbox=outbox_url)) as relay:
        for p in range(PEOPLE):
            relay.identify(f"w-{p}", email=f"w-{p}@example.com")
            for n in range(EVENTS_EACH):
                relay.track(f"w-{p}", "page_viewed", {"n": n})
        relay.send_email(
            to="w-0@example.com", identifiers={"id": "w-0"}, transactional_message_id="welcome"
        )

    child = Child(["worker"], cwd=tmp_path, env=env)
    outbox = open_outbox(outbox_url)
    try:
        with httpx.Client(base_url=emulator.url, timeout=10) as inspect:

            def drained() -> bool:
                stats = inspect.get("/_emulator/stats").json()
                return (
                    stats["events_accepted"] == PEOPLE * EVENTS_EACH
                    and stats["deliveries"] == 1
                    and outbox.depth().pending == 0
                )

            assert wait_for(drained, DEADLINE), child.output
            people = inspect.get("/_emulator/people").json()
        depth = outbox.depth()
        assert child.proc.poll() is None  # an empty outbox does not end the worker
    finally:
        outbox.close()
        code = child.stop(DEADLINE)
    assert code == 0, child.output
    assert depth.dead == 0 and depth.pending == 0
    assert people["total"] == PEOPLE
    assert {p["email"] for p in people["people"]} == {f"w-{p}@example.com" for p in range(PEOPLE)}
    assert config.track_api_key not in child.output
