"""The v2 batch hot path (person events): what it stores, and what it costs in memory."""

from __future__ import annotations

import gc
import time
from typing import Any

import orjson
import pytest

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


# --- the plain-event shortcut judges exactly as the general path ------------------------------

_ULID = "01JD0000000000000000000ABC"


def _event(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "person",
        "action": "event",
        "identifiers": {"id": "u1"},
        "name": "paid",
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not _ABSENT}


_ABSENT: Any = object()

_ITEMS: list[Any] = [
    _event(id=_ULID, timestamp=1_700_000_000, attributes={"total": 3, "sku": "A-1"}),
    _event(id="01jd0000000000000000000abd"),  # lower case: stored upper-case
    _event(id="01000000000000000000000123"),  # digits only
    _event(id="81JD0000000000000000000ABC"),
    _event(id="01JD000000000000000000012I"),
    _event(id="01JD000000000000000000012ß"),
    _event(id=5),
    _event(id=None),
    _event(id=_ULID),  # a duplicate
    _event(name="  padded\t"),
    _event(name="   "),
    _event(name=5),
    _event(name=_ABSENT),
    _event(name="n" * 101),
    _event(name="é" * 50),  # 100 bytes: at the limit
    _event(name="é" * 51),
    _event(name=" " * 90 + "x"),
    _event(attributes=None, data={"legacy": True}),
    _event(attributes={"a": 1, "b": 2}, data={"a": 0, "c": 3}),  # attributes win
    _event(attributes=[1]),
    _event(data="x"),
    _event(attributes={}),
    _event(attributes=None),
    _event(attributes={"blob": "x" * 100_001}),
    _event(timestamp=True),
    _event(timestamp="1700000000"),
    _event(timestamp=1.5),
    _event(timestamp=None),
    _event(timestamp=-(2**63)),
    _event(identifiers={"email": "A@example.com"}),
    _event(identifiers={"cio_id": "unknown"}),
    _event(identifiers={"id": 42}),
    _event(identifiers={"id": ""}),
    _event(identifiers={"id": "x" * 38}),
    _event(identifiers={"id": "x" * 151}),
    _event(identifiers={"id": "é" * 76}),  # 152 bytes
    _event(identifiers={"id": "u1", "email": "u1@example.com"}),
    _event(identifiers="u1"),
    _event(extra="kept out of the event"),
    _event(padding="x" * 32_000),  # over 32,000 bytes by another key
    _event(attributes={"blob": "x" * 31_950}),  # over 32,000 bytes by its properties
    _event(attributes={"blob": "x" * 31_850}),  # under
    _event(type="object"),
    _event(action="page"),
    "not an operation",
    [],
]


def _run(items: list[Any], *, shortcut: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    em = Emulator()
    taken = []
    shortcut_of = track_v2._stored_plain_event

    def counted(*args: Any) -> bool:
        stored = shortcut_of(*args)
        taken.extend([True] if stored else [])
        return stored

    with monkeypatch.context() as patch:
        patch.setattr(track_v2, "_stored_plain_event", counted if shortcut else lambda *a: False)
        body = orjson.dumps({"batch": items})
        reply = track_v2.batch(em, Request("POST", "/api/v2/batch", [], b"", body, "", b""))
    assert len(taken) >= 10 if shortcut and len(items) > 2 else not taken
    state = em.state
    events = [state.event_json(event) for event in state.stored_events()]
    for event in events:
        del event["received_at"]
    people = sorted((p.cio_id, p.id, p.email, p.attributes) for p in state.people.values())
    return reply.status, orjson.loads(reply.body), events, people, state.stats


@pytest.mark.parametrize("large_body", [False, True], ids=["small-body", "large-body"])
def test_batches_are_answered_and_stored_as_by_the_general_path(
    large_body: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _ITEMS if large_body else [i for i in _ITEMS if len(orjson.dumps(i)) < 1000]
    assert (len(orjson.dumps({"batch": items})) > V2_ITEM_BYTES) is large_body
    fast = _run(items, shortcut=True, monkeypatch=monkeypatch)
    general = _run(items, shortcut=False, monkeypatch=monkeypatch)
    assert fast == general
    assert fast[0] == 207 and fast[2]  # both kinds of item are in the mix


@pytest.mark.parametrize("shortcut", [True, False])
def test_an_item_too_deep_to_measure_fails_the_request_either_way(
    shortcut: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 254 levels of properties serialise alone but not inside their item (255): the general
    # path fails while measuring the item, and so must the shortcut.
    nested: Any = []
    for _ in range(253):
        nested = [nested]
    items = [_event(attributes={"deep": nested}), _event(padding="x" * V2_ITEM_BYTES)]
    with pytest.raises(orjson.JSONEncodeError):
        _run(items, shortcut=shortcut, monkeypatch=monkeypatch)


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


def test_orjson_refuses_255_levels_as_the_shortcut_assumes() -> None:
    # _SMALL_PROPERTIES relies on this limit: properties under 508 bytes nest < 254 levels.
    nested: Any = []
    for _ in range(253):
        nested = [nested]
    orjson.dumps(nested)  # 254 levels
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps([nested])
    assert track_v2._SMALL_PROPERTIES == 2 * 254


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
