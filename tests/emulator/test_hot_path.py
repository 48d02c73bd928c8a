"""The v2 batch hot path (person events): what it stores, and what it costs in memory."""

from __future__ import annotations

import gc
import time
from typing import Any

import orjson

from cio_relay.emulator import EmulatorServer, track_v2
from cio_relay.emulator.app import Emulator
from cio_relay.emulator.http import Request
from cio_relay.emulator.limits import V2_ITEM_BYTES
from cio_relay.emulator.state import EmulatorState
from tests.fixtures.memory import needs_proc, resident_growth

from .helpers import inspect, track_client

# Stores 20,000 events the way the handlers do and prints the growth of the resident set.
_STORE_EVENTS = """
from cio_relay.emulator.limits import check_event
from cio_relay.emulator.state import EmulatorState

state = EmulatorState()
before = rss()
for n in range(20_000):
    body = {"name": "order_completed", "data": {"order_id": f"order-{n}", "total": 42.5}}
    state.add_event("cio", None, *check_event(body))
print(rss() - before)
"""


@needs_proc
def test_a_stored_event_costs_hundreds_of_bytes_not_a_serialiser_buffer() -> None:
    # orjson's output buffer is a few KB; kept as is, each stored event pinned one (~4 KB).
    assert resident_growth(_STORE_EVENTS) < 20_000 * 1_000


_ULID = "01JD0000000000000000000ABC"


def _event(**fields: Any) -> dict[str, Any]:
    return {
        "type": "person",
        "action": "event",
        "identifiers": {"id": "u1"},
        "name": "paid",
        **fields,
    }


def test_a_batch_reads_the_clock_once_and_keeps_ids_and_names_as_documented() -> None:
    em = Emulator()
    items = [
        _event(id="01jd0000000000000000000abc", attributes={"n": 1}),
        _event(name="  padded  ", identifiers={"id": "u2"}),
    ]
    body = orjson.dumps({"batch": items})
    before = time.time()
    reply = track_v2.batch(em, Request("POST", "/api/v2/batch", [], b"", body, "", b""))
    assert reply.status == 200
    first, second = em.state.stored_events()
    assert (first.event_id, first.name, orjson.loads(first.data)) == (_ULID, "paid", {"n": 1})
    assert (second.event_id, second.name, second.data) == (None, "padded", b"{}")
    assert before <= first.received_at == second.received_at <= time.time()


def test_the_dedupe_window_forgets_the_oldest_id_first() -> None:
    state = EmulatorState(dedupe_window=2)

    def add(event_id: str) -> bool:
        return state.add_event("cio", None, "e", "event", event_id, None, b"{}")

    assert [add(i) for i in ("A", "B", "A", "C", "A", "B", "B")] == [
        True,  # A
        True,  # A B
        False,
        True,  # B C: A forgotten
        True,  # C A
        True,  # A B
        False,
    ]
    assert state.stats.duplicate_event_ids == 2
    assert state.seen_event_ids == {"A", "B"}


def test_over_http_ids_names_and_sizes_are_judged_per_item(emulator: EmulatorServer) -> None:
    items = [_event(id=f"01jd{n:022d}", name=f"  paid {n} ") for n in range(200)]
    items[2] = _event(padding="x" * V2_ITEM_BYTES)
    with track_client(emulator) as client:
        response = client.post("/api/v2/batch", json={"batch": items})
    assert response.status_code == 207
    size = len(orjson.dumps(items[2]))
    assert response.json() == {
        "errors": [
            {
                "batch_index": 2,
                "reason": "too_large",
                "field": "",
                "message": f"operation cannot be larger than 32000 bytes (was {size})",
            }
        ]
    }
    events = inspect(emulator, "events", limit=500)["events"]
    assert len(events) == 199
    assert (events[0]["id"], events[0]["name"]) == ("01JD0000000000000000000000", "paid 0")
    assert (events[-1]["id"], events[-1]["name"]) == ("01JD0000000000000000000199", "paid 199")


def test_stored_events_leave_the_collectors_sight() -> None:
    # A million stored events must not be re-scanned by every collection: plain tuples of
    # atomic values are untracked at their first collection (NamedTuples never are).
    state = EmulatorState()
    state.add_event("cio", None, "paid", "event", _ULID, 1.5, b"{}")
    gc.collect()
    assert not gc.is_tracked(state.events[0])
    assert next(state.stored_events()).event_id == _ULID
