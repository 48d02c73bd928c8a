"""The v2 batch hot path (person events): what it stores, and what it costs in memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cio_relay.emulator.state import EmulatorState

# Stores 20,000 events the way the handlers do and prints the growth of the resident set.
_STORE_EVENTS = textwrap.dedent(
    """
    import os
    from cio_relay.emulator.limits import check_event
    from cio_relay.emulator.state import EmulatorState

    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    state = EmulatorState()
    before = rss()
    for n in range(20_000):
        body = {"name": "order_completed", "data": {"order_id": f"order-{n}", "total": 42.5}}
        state.add_event("cio", None, *check_event(body))
    print(rss() - before)
    """
)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_a_stored_event_costs_hundreds_of_bytes_not_a_serialiser_buffer() -> None:
    # orjson's output buffer is a few KB; kept as is, each stored event pinned one (~4 KB).
    grown = subprocess.run(
        [sys.executable, "-c", _STORE_EVENTS], capture_output=True, text=True, check=True
    ).stdout
    assert int(grown) < 20_000 * 1_000


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
