"""``cio-relay worker`` whose ``CUSTOMERIO_REGION`` is not the account's: it asks Customer.io at
start-up and stops at once with status 2 and one clear line, before sending anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cio_relay.config import Settings
from cio_relay.emulator import EmulatorConfig, EmulatorServer
from cio_relay.outbox.factory import open_outbox
from cio_relay.relay import Relay
from tests.cli.helpers import Child, worker_env

DEADLINE = 60.0


@pytest.fixture(scope="module")
def eu_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(region="eu")) as server:
        yield server


def test_a_worker_in_the_wrong_region_stops_with_status_2_and_sends_nothing(
    tmp_path: Path, eu_emulator: EmulatorServer
) -> None:
    outbox_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    with Relay(Settings(outbox=outbox_url)) as relay:
        relay.track("ada", "signed_up")
    env = worker_env(eu_emulator, outbox_url, CUSTOMERIO_REGION="us")
    child = Child(["worker"], cwd=tmp_path, env=env)
    child.proc.wait(DEADLINE)
    code = child.stop(DEADLINE)
    assert code == 2, child.output
    assert "configuration error" in child.output and "Traceback" not in child.output
    assert "CUSTOMERIO_REGION=eu" in child.output
    stats = httpx.get(f"{eu_emulator.url}/_emulator/stats").json()
    assert stats["events_accepted"] == 0
    outbox = open_outbox(outbox_url)
    try:
        depth = outbox.depth()
    finally:
        outbox.close()
    assert (depth.pending, depth.dead) == (1, 0)
