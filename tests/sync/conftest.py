"""Fixtures of the user sync tests: a relay on each outbox that has a user store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cio_relay.config import Settings
from cio_relay.operations import Operation
from cio_relay.outbox.base import Outbox
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.outbox.sqlite import SqliteOutbox
from cio_relay.relay import Relay
from cio_relay.sync import UserRepository


def open_outbox(kind: str, tmp_path: Path) -> Outbox:
    return MemoryOutbox() if kind == "memory" else SqliteOutbox(tmp_path / "outbox.db")


@pytest.fixture(params=["memory", "sqlite"])
def relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Relay]:
    outbox = open_outbox(request.param, tmp_path)
    relay = Relay(Settings(stamp_env=False), outbox=outbox)
    yield relay
    outbox.close()


@pytest.fixture
def users(relay: Relay) -> UserRepository:
    return UserRepository(relay)


def take_all(outbox: Outbox) -> list[Operation]:
    """Every pending operation, taken out of the outbox: each person's in enqueue order."""
    ops: list[Operation] = []
    while leases := outbox.lease(10_000, 60.0):  # a person's next only once the head is acked
        ops.extend(lease.op for lease in leases)
        outbox.ack(leases)
    return ops
