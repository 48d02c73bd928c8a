"""Webhook payloads and signed headers for the tests, built by hand (not by the code under test)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from typing import Any

import orjson

KEY = "test-signing-key"
OLD_KEY = "old-signing-key"
_counter = itertools.count(1)


def event_id() -> str:
    """A unique, ULID-shaped id (26 characters)."""
    return f"01HZ{next(_counter):022d}"


def payload(
    object_type: str = "email",
    metric: str = "delivered",
    *,
    event_id_: str | None = None,
    timestamp: float = 1_700_000_000,
    **data: Any,
) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id_ or event_id(),
            "object_type": object_type,
            "metric": metric,
            "timestamp": timestamp,
            "data": data,
        }
    )


def signed(body: bytes, *, timestamp: int, key: str = KEY) -> dict[str, str]:
    """Signature headers for ``body`` at ``timestamp``: the receivers under test take a fixed
    clock, so a test names the instant rather than reading the wall clock."""
    ts = str(timestamp)
    digest = hmac.new(key.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {"X-CIO-Timestamp": ts, "X-CIO-Signature": digest.hexdigest()}
