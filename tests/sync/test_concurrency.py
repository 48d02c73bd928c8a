"""Concurrent syncs of the same people: the outbox's identifies, applied in order, rebuild the
stored state (no change recorded without its operation, none diffed against a stale state)."""

from __future__ import annotations

import random
import threading
from typing import Any

from cio_relay.operations import Kind
from cio_relay.relay import Relay
from cio_relay.sync import UserRepository
from tests.sync.conftest import take_all

PEOPLE = ["ada", "grace"]
THREADS = 6
CALLS = 25


def _sync_randomly(users: UserRepository, seed: int) -> None:
    draw = random.Random(seed)
    for _ in range(CALLS):
        attributes = {key: draw.randint(0, 2) for key in ("a", "b", "c") if draw.random() < 0.6}
        users.sync_user(draw.choice(PEOPLE), attributes)


def test_operations_replayed_in_order_rebuild_the_state(
    users: UserRepository, relay: Relay
) -> None:
    threads = [threading.Thread(target=_sync_randomly, args=(users, n)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rebuilt: dict[str, dict[str, Any]] = {}
    for op in take_all(relay.outbox):  # each person's operations in enqueue order
        assert op.kind is Kind.IDENTIFY
        person = rebuilt.setdefault(str(op.identifiers["id"]), {})
        for key, value in op.payload["attributes"].items():
            if value == "":
                person.pop(key, None)
            else:
                person[key] = value
    for name in PEOPLE:
        state = users.get(name)
        assert state is not None
        assert rebuilt[name] == state.attributes
