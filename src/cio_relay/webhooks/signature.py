"""Customer.io reporting-webhook signatures: sign and verify (stdlib only).

Customer.io signs ``"v0:" + X-CIO-Timestamp + ":" + raw_body`` with HMAC-SHA256 keyed by the
webhook signing key and sends the hex digest in ``X-CIO-Signature`` (customerio-api.md §6).

Verification works on the raw bytes before any parsing, compares in constant time against every
configured key (so keys can be rotated without downtime), and rejects timestamps outside a
tolerance to stop replays. Every failure raises the same ``SignatureError`` with a short, fixed
reason for logs; callers answer 401 with no detail.

``check_headers`` is the part that needs no body: the two headers present, well formed, and
the timestamp within the tolerance. ``verify`` starts with it; a receiver calls it before
reading the body, so a request that cannot be authentic is refused without its body being read.
``StreamingSignature`` is the HMAC of the rest computed while the body streams in (``v0:{ts}:``
first, then each chunk), so a receiver need not keep a large body whole to verify it; the
constant-time comparison happens once, at the end.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

from cio_relay.digits import whole_number
from cio_relay.errors import SignatureError

__all__ = [
    "DEFAULT_TOLERANCE",
    "StreamingSignature",
    "check_headers",
    "sign",
    "signature_headers",
    "verify",
]

DEFAULT_TOLERANCE = 300  # seconds; Customer.io documents none, 5 minutes is the common choice
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_SIGNATURE_HEX_LENGTH = 64
_TIMESTAMP_MAX_DIGITS = 12  # Unix seconds for the next 30,000 years


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(key: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``v0:{timestamp}:{body}`` under ``key``."""
    message = b"v0:" + str(timestamp).encode() + b":" + body
    return hmac.new(_as_bytes(key), message, hashlib.sha256).hexdigest()


def signature_headers(
    key: str | bytes, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The two headers Customer.io sends with a webhook of ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {"X-CIO-Timestamp": str(ts), "X-CIO-Signature": sign(key, ts, body)}


def check_headers(
    timestamp: str | None,
    signature: str | None,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check what can be checked without the body; return the timestamp, or raise
    ``SignatureError``: both headers present, the timestamp ASCII digits within ``tolerance``
    seconds of ``now``, the signature 64 hex digits."""
    if not timestamp or not signature:
        raise SignatureError("missing signature headers")
    sent_at = whole_number(timestamp, max_digits=_TIMESTAMP_MAX_DIGITS)
    if sent_at is None:
        raise SignatureError("malformed timestamp")
    if len(signature) != _SIGNATURE_HEX_LENGTH or not _HEX_DIGITS.issuperset(signature):
        raise SignatureError("malformed signature")
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise SignatureError("timestamp outside tolerance")
    return sent_at


class StreamingSignature:
    """The HMACs of ``v0:{timestamp}:`` + the body under every key, fed chunk by chunk."""

    __slots__ = ("_macs",)

    def __init__(self, keys: Iterable[str | bytes], timestamp: str | int) -> None:
        prefix = b"v0:" + str(timestamp).encode() + b":"
        self._macs = [hmac.new(_as_bytes(key), prefix, hashlib.sha256) for key in keys]

    def update(self, chunk: bytes) -> None:
        for mac in self._macs:
            mac.update(chunk)

    def matches(self, signature: str) -> bool:
        """Whether ``signature`` (hex) is the HMAC under any key: every key is compared, in
        constant time, so timing does not reveal which key signed."""
        given = signature.lower().encode()
        matched = False
        for mac in self._macs:
            matched |= hmac.compare_digest(mac.hexdigest().encode(), given)
        return matched


def verify(
    keys: Iterable[str | bytes],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a webhook; return its timestamp, or raise ``SignatureError``.

    ``keys`` are all the signing keys currently accepted (old and new during a rotation).
    """
    sent_at = check_headers(timestamp, signature, tolerance=tolerance, now=now)
    assert timestamp is not None and signature is not None  # check_headers refused None
    digest = StreamingSignature(keys, timestamp)
    digest.update(body)
    if not digest.matches(signature):
        raise SignatureError("signature mismatch")
    return sent_at
