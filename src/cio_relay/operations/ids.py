"""Op ids: ULIDs made here, or given by a caller and checked.

An op id is the operation's idempotency key end to end (design.md contract 2): unique in the
outbox, and sent as a Track event's ``id`` so that Customer.io ignores a redelivery. Op ids must
be unique, not secret: 80 random bits per millisecond are.
"""

from __future__ import annotations

import os
import random
import re
import time

from cio_relay.errors import ValidationError

__all__ = ["checked_op_id", "new_op_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> two base32 digits
# Seeded from the system's random source, and again in a forked child (uvicorn workers).
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))
_random_bits = _random.getrandbits
_clock_ns = time.time_ns
# The current millisecond and its 10 base32 digits: encoded once per millisecond, not per id.
# One tuple, replaced whole, so that threads never see the digits of another millisecond.
_time_prefix: tuple[int, str] = (-1, "")


def _encode_time(ms: int) -> str:
    """48 bits of milliseconds as the first 10 digits of a ULID (the first carries 3 bits)."""
    p = _PAIRS
    return (
        p[ms >> 40 & 1023] + p[ms >> 30 & 1023] + p[ms >> 20 & 1023] + p[ms >> 10 & 1023]
        + p[ms & 1023]
    )  # fmt: skip


def new_op_id() -> str:
    """A new op id: a ULID (48 bits of milliseconds, 80 random bits, Crockford base32).

    Made for a hot path (every operation gets one), faster than python-ulid's ``str(ULID())``
    (docs/benchmarks.md): the random bits come from a generator seeded from the system's random
    source instead of a system call per id (on the ingestion hot path each system call also
    hands the GIL to the thread writing the outbox, which then keeps it for a while), and the
    time digits are encoded once per millisecond.
    """
    global _time_prefix
    ms = _clock_ns() // 1_000_000
    cached_ms, digits = _time_prefix
    if ms != cached_ms:
        digits = _encode_time(ms)
        _time_prefix = (ms, digits)
    # Four draws of 20 bits: small ints, where one of 80 bits is a multi-digit int whose every
    # shift and mask allocates.
    a, b, c, d = _random_bits(20), _random_bits(20), _random_bits(20), _random_bits(20)
    p = _PAIRS
    return (
        f"{digits}{p[a >> 10]}{p[a & 1023]}{p[b >> 10]}{p[b & 1023]}"
        f"{p[c >> 10]}{p[c & 1023]}{p[d >> 10]}{p[d & 1023]}"
    )


_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


def checked_op_id(op_id: str) -> str:
    """A caller's own op id, upper-cased: it must be a ULID, because a Track event carries it
    as its ``id`` and Customer.io refuses any other (better here than in the worker)."""
    if not isinstance(op_id, str) or _ULID.fullmatch(op_id.upper()) is None:
        size = len(op_id) if isinstance(op_id, str) else type(op_id).__name__
        raise ValidationError(
            "op_id", f"must be a ULID (26 Crockford base32 characters); got {size!r}"
        )
    return op_id.upper()
