"""Durable outbox backends behind one protocol; ``open_outbox(url)`` picks one by URL."""

from cio_relay.outbox.base import DeadLetter, DeadLetterFilter, DeadReason, Depth, Lease, Outbox
from cio_relay.outbox.factory import open_outbox
from cio_relay.outbox.memory import MemoryOutbox
from cio_relay.outbox.sqlite import SqliteOutbox

__all__ = [
    "DeadLetter",
    "DeadLetterFilter",
    "DeadReason",
    "Depth",
    "Lease",
    "MemoryOutbox",
    "Outbox",
    "SqliteOutbox",
    "open_outbox",
]
