"""A small in-memory ring of per-minute counters: the dashboard's throughput chart.

Fed by the delivery hooks (enqueued, delivered, dead-lettered); holds the last hour in 60 slots
and nothing else, so it costs a few kilobytes whatever the traffic. It is per process and starts
empty at each start: the long view belongs to Prometheus.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from cio_relay.delivery.hooks import Hooks
from cio_relay.operations import Operation

__all__ = ["Minute", "ThroughputRing"]


@dataclass(frozen=True, slots=True)
class Minute:
    """Counts for the minute starting at ``start`` (unix seconds)."""

    start: int
    enqueued: int
    delivered: int
    dead: int


class ThroughputRing:
    """Per-minute enqueued/delivered/dead counters over the last ``minutes`` minutes."""

    def __init__(self, minutes: int = 60) -> None:
        self.minutes = minutes
        self._starts = [-1] * minutes  # which minute each slot currently counts
        self._counts = [[0, 0, 0] for _ in range(minutes)]
        self._lock = threading.Lock()  # enqueued fires on writer threads, the rest on the loop

    def subscribe(self, hooks: Hooks) -> None:
        # Not enqueued: the chart shows what left the outbox, and ingestion is the hot path.
        hooks.on_delivered(self._on_delivered)
        hooks.on_dead(self._on_dead)

    def _on_delivered(self, op: Operation, latency: float) -> None:
        self.record(1)

    def _on_dead(self, op: Operation, reason: str, detail: str) -> None:
        self.record(2)

    def record(self, column: int, count: int = 1, now: float | None = None) -> None:
        """Add ``count`` to ``column`` (0 enqueued, 1 delivered, 2 dead) of the current minute.

        Delivered and dead come from the hooks; enqueued is there for callers that want it."""
        minute = int((time.time() if now is None else now) // 60)
        slot = minute % self.minutes
        with self._lock:
            if self._starts[slot] != minute:  # the slot still holds an hour-old minute
                self._starts[slot] = minute
                self._counts[slot] = [0, 0, 0]
            self._counts[slot][column] += count

    def series(self, now: float | None = None) -> list[Minute]:
        """The last ``minutes`` minutes, oldest first, zeros where nothing happened."""
        current = int((time.time() if now is None else now) // 60)
        out: list[Minute] = []
        with self._lock:
            for minute in range(current - self.minutes + 1, current + 1):
                slot = minute % self.minutes
                counts = self._counts[slot] if self._starts[slot] == minute else [0, 0, 0]
                out.append(Minute(minute * 60, counts[0], counts[1], counts[2]))
        return out
