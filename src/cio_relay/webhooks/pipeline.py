"""The work after the 200: inbox -> data lake (every event) and inbox -> router (handlers).

``cio-relay run`` wires::

    receiver = WebhookReceiver(inbox, keys, on_stored=pipeline.notify)   # request path
    pipeline = WebhookPipeline(inbox, router, lake); pipeline.start()     # background thread

Why the lake is a separate consumer of the inbox and not a ``"*"`` handler of the router:

- the lake wants rows in bulk (a Parquet file per flush, ~10^5 rows), handlers want one event
  at a time; a cursor over the inbox's arrival order (``seq``) gives the lake large batches
  and costs one saved integer per flush instead of a state write per event;
- failures stay apart: a handler failing (the suppress call is down) must not delay
  analytics, and a lake failure (disk full) must not re-run side-effecting handlers, which a
  shared per-event retry would do;
- the lake sees every event exactly as stored, including those no handler cares about.

The lake cursor is saved only after the lake has flushed, so a crash re-sends the rows since
the last flush: delivery into the lake is at least once, and compaction and the funnel's
distinct counts make the duplicates invisible.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cio_relay.errors import EventParseError
from cio_relay.lake.base import Lake
from cio_relay.lake.schema import LakeEvent
from cio_relay.webhooks.events import Event, parse_event
from cio_relay.webhooks.inbox import DEFAULT_RETENTION, Inbox, StoredEvent
from cio_relay.webhooks.router import DrainReport, Router

__all__ = ["LAKE_CURSOR", "PipelineReport", "WebhookPipeline", "lake_event"]

log = logging.getLogger("cio_relay.webhooks")

LAKE_CURSOR = "lake"


def lake_event(stored: StoredEvent) -> LakeEvent:
    """The lake row of a stored event; raises ``EventParseError`` if it no longer parses."""
    event = parse_event(stored.raw)
    return LakeEvent(
        event.event_id,
        event.object_type,
        event.metric,
        float(event.timestamp),
        stored.received_at,
        event.customer_id,
        event.email,
        event.delivery_id,
        event.campaign_id,
        event.broadcast_id,
        event.journey_id,
        event.action_id,
        event.transactional_message_id,
        event.recipient,
        event.subject,
        event.href,
        event.failure_message,
        stored.raw.decode("utf-8", "replace"),
    )


@dataclass(slots=True)
class PipelineReport:
    lake_rows: int = 0
    handlers: DrainReport = field(default_factory=DrainReport)


class WebhookPipeline:
    """Feeds the lake and runs the router from an inbox; ``drain()`` or a background thread."""

    def __init__(
        self,
        inbox: Inbox,
        router: Router | None = None,
        lake: Lake | None = None,
        *,
        lake_batch: int = 5_000,
        lake_flush_rows: int = 50_000,
        lake_flush_interval: float = 5.0,
        poll_interval: float = 1.0,
        retention: float = DEFAULT_RETENTION,
        prune_interval: float = 3600.0,
        compact_interval: float | None = 6 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inbox = inbox
        self.router = router if router is not None else Router()
        self.lake = lake
        self.lake_batch = lake_batch
        self.lake_flush_rows = lake_flush_rows
        self.lake_flush_interval = lake_flush_interval
        self.poll_interval = poll_interval
        self.retention = retention
        self.prune_interval = prune_interval
        self.compact_interval = compact_interval
        self._clock = clock
        self._feed_lock = threading.Lock()
        self._lake_seq: int | None = None  # read position; the saved cursor lags until a flush
        self._unflushed = 0
        self._unflushed_since: float | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        now = clock()
        self._next_prune = now + prune_interval
        self._next_compact = None if compact_interval is None else now + compact_interval

    def notify(self, event: Event | None = None) -> None:
        """Wake the background thread: new work is in the inbox (the receiver's ``on_stored``)."""
        self._wake.set()

    # --- the lake feed ----------------------------------------------------------------------

    def feed_lake(self, *, flush: bool = True) -> int:
        """Copy events past the lake cursor into the lake; return how many.

        With ``flush`` (or when the flush policy says so) the lake is flushed and the cursor
        saved; otherwise rows may wait in the lake's buffer.
        """
        if self.lake is None:
            return 0
        with self._feed_lock:
            if self._lake_seq is None:
                self._lake_seq = self.inbox.cursor(LAKE_CURSOR)
            copied = 0
            while batch := self.inbox.read_after(self._lake_seq, self.lake_batch):
                self.lake.write(self._rows(batch))
                self._lake_seq = batch[-1].seq
                copied += len(batch)
                self._unflushed += len(batch)
                if self._unflushed_since is None:
                    self._unflushed_since = self._clock()
            if self._unflushed and (flush or self._flush_due()):
                self.lake.flush()
                self.inbox.set_cursor(LAKE_CURSOR, self._lake_seq)
                self._unflushed = 0
                self._unflushed_since = None
            return copied

    def _flush_due(self) -> bool:
        since = self._unflushed_since
        return self._unflushed >= self.lake_flush_rows or (
            since is not None and self._clock() - since >= self.lake_flush_interval
        )

    @staticmethod
    def _rows(batch: list[StoredEvent]) -> list[LakeEvent]:
        rows = []
        for stored in batch:
            try:
                rows.append(lake_event(stored))
            except EventParseError as exc:  # the router parks it; the lake cannot hold it
                log.error("webhook %s not written to the lake: %s", stored.event_id, exc)
        return rows

    # --- one pass, and the background loop --------------------------------------------------

    def drain(self, *, now: float | None = None) -> PipelineReport:
        """Everything due now: feed (and flush) the lake, then run handlers until none is due."""
        lake_rows = self.feed_lake(flush=True)
        return PipelineReport(lake_rows, self.router.drain(self.inbox, now=now))

    def _step(self) -> None:
        self.feed_lake(flush=False)
        self.router.drain(self.inbox)
        now = self._clock()
        if now >= self._next_prune:
            self._next_prune = now + self.prune_interval
            pruned = self.inbox.prune(retention=self.retention, now=now)
            log.info("webhook inbox pruned %d events older than the retention", pruned)
        if self._next_compact is not None and self.lake is not None and now >= self._next_compact:
            assert self.compact_interval is not None
            self._next_compact = now + self.compact_interval
            log.info("lake compacted: %s", self.lake.compact())

    def _wait_time(self) -> float:
        timeout = self.poll_interval
        now = self._clock()
        next_due = self.inbox.next_due_at()
        if next_due is not None:
            timeout = min(timeout, next_due - now)
        if self._unflushed_since is not None:
            timeout = min(timeout, self._unflushed_since + self.lake_flush_interval - now)
        return max(timeout, 0.005)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self._step()
                timeout = self._wait_time()
            except Exception:
                log.exception("webhook pipeline step failed; retrying")
                timeout = self.poll_interval
            self._wake.wait(timeout)
        try:
            self.feed_lake(flush=True)
        except Exception:
            log.exception("final lake flush failed; the rows stay in the inbox")

    def start(self) -> None:
        """Run in a background thread until ``stop``."""
        if self._thread is not None:
            raise RuntimeError("pipeline: already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="webhook-pipeline", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the thread after its current step, flushing the lake. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> WebhookPipeline:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
