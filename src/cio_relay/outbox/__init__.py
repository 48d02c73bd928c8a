"""Durable outbox backends behind one protocol; ``open_outbox(url)`` picks one by URL."""

from cio_relay.outbox.base import DeadLetter, DeadLetterFilter, DeadReason, Depth, Lease, Outbox

__all__ = ["DeadLetter", "DeadLetterFilter", "DeadReason", "Depth", "Lease", "Outbox"]
