"""Random sequences of ``sync_user`` end with the emulator holding the last synced attributes.

After any sequence of syncs (keys added, changed, removed, people synced again unchanged) and a
``worker().drain()`` against the in-process emulator, each person's attributes there equal the
last attributes synced for them; a key removed is gone there too (the ``""`` that clears it is
what Customer.io documents as removing an attribute). Erasure ends with the person gone from the
emulator.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cio_relay.emulator import EmulatorServer
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.relay import Relay
from cio_relay.sync import UserRepository
from tests.fixtures.delivery import emulator_settings

PEOPLE = ["ada", "grace", "linus"]
KEYS = ["plan", "city", "seats", "beta", "tags"]
VALUES = st.one_of(
    st.text(min_size=1, max_size=12),
    st.integers(-1000, 1000),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=3),
)
ATTRIBUTES = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=len(KEYS))
SYNCS = st.lists(st.tuples(st.sampled_from(PEOPLE), ATTRIBUTES), min_size=1, max_size=12)


def _people_at(emulator: EmulatorServer) -> dict[str, dict[str, Any]]:
    with httpx.Client(base_url=f"{emulator.url}/_emulator", timeout=30) as client:
        rows = client.get("people", params={"limit": 1000}).json()["people"]
    return {row["id"]: {k: v for k, v in row["attributes"].items() if k != "id"} for row in rows}


def _fresh_relay(emulator: EmulatorServer) -> Relay:
    httpx.post(f"{emulator.url}/_emulator/reset", timeout=10).raise_for_status()
    return Relay(emulator_settings(emulator, "memory://"), outbox=MemoryOutbox())


@pytest.fixture(scope="module")
def shared_emulator(_emulator_session: EmulatorServer) -> EmulatorServer:
    """The session's emulator, reset by each example itself (``_fresh_relay``)."""
    return _emulator_session


@settings(max_examples=25, deadline=None)
@given(syncs=SYNCS)
def test_the_emulator_ends_with_the_last_synced_attributes(
    shared_emulator: EmulatorServer, syncs: list[tuple[str, dict[str, Any]]]
) -> None:
    relay = _fresh_relay(shared_emulator)
    users = UserRepository(relay)
    last: dict[str, dict[str, Any]] = {}
    for person, attributes in syncs:
        users.sync_user(person, attributes)
        last[person] = attributes
    stats = relay.worker().drain()
    assert relay.outbox.depth().pending == 0, stats
    assert _people_at(shared_emulator) == last


def test_erasure_removes_the_person_at_the_emulator(emulator: EmulatorServer) -> None:
    relay = Relay(emulator_settings(emulator, "memory://"), outbox=MemoryOutbox())
    users = UserRepository(relay)
    users.sync_user("ada", {"plan": "pro"})
    users.sync_user("grace", {"plan": "team"})
    relay.worker().drain()
    users.delete_user("ada")
    relay.worker().drain()
    assert _people_at(emulator) == {"grace": {"plan": "team"}}
