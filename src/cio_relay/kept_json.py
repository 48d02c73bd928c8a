"""JSON bytes that are kept: ``orjson.dumps`` output copied to its own size.

orjson writes into a buffer of a few KB from the C allocator and shrinks it in place, so a
result that outlives the next call pins the whole buffer, and each new one faults in a fresh
page (docs/benchmarks.md, "Figures behind design choices", has the cost of both). The copy is
made by Python's allocator at the result's size, and orjson's buffer goes back for the next call
to reuse.

Use ``dumps`` (or ``right_sized`` on bytes already made) wherever results are collected: records
for an outbox, items for a batch, properties stored by the emulator. A result used once and
dropped at once needs none of this.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps", "right_sized"]


def right_sized(encoded: bytes) -> bytes:
    """A copy of ``orjson.dumps`` output at its own size (see the module docstring)."""
    return b"%b" % encoded


def dumps(value: Any) -> bytes:
    """``orjson.dumps(value)`` for a result that is kept; raises as ``orjson.dumps`` does."""
    return b"%b" % orjson.dumps(value)
