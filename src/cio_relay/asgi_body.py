"""The body of an ASGI HTTP request, read whole under a size cap, and what a 413 says.

The ingestion API and the webhook receiver read their bodies through ``read_body``: a declared
``Content-Length`` over the cap is refused before anything is read, and a body that grows past
the cap while streaming is refused at once, without keeping the rest. The refusal is a
``TooLarge``, whose ``json()`` is the one 413 body of the service, in the API's error shape
(``{"error": "too_large", "message", "field": "body", "limit", "size", "unit"}``); each front end
only wraps those bytes in its own response type. (The emulator keeps its own reader: it stands
apart from the client's code on purpose.)

The webhook receiver reads through ``stream_body`` instead: every chunk goes to a callback (the
signature's HMAC) and only the first ``keep`` bytes are kept, because an authentic webhook must
never be refused for its size (Customer.io pauses an endpoint that answers an error).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
from starlette.types import Receive

__all__ = ["StreamedBody", "TooLarge", "read_body", "stream_body"]


@dataclass(frozen=True, slots=True)
class TooLarge:
    """A body over ``limit`` bytes: ``size`` is the declared length, or None when the body was
    found too large while it streamed in."""

    limit: int
    size: int | None = None

    @property
    def message(self) -> str:
        if self.size is None:
            return f"body: larger than the limit of {self.limit} bytes"
        return f"body: {self.size} bytes exceeds the limit of {self.limit} bytes"

    def json(self) -> bytes:
        """The 413 answer's body."""
        answer: dict[str, object] = {
            "error": "too_large",
            "message": self.message,
            "field": "body",
            "limit": self.limit,
        }
        if self.size is not None:
            answer["size"] = self.size
        answer["unit"] = "bytes"
        return orjson.dumps(answer)


async def read_body(
    receive: Receive, limit: int, declared: int | None = None
) -> bytes | TooLarge | None:
    """The whole body; ``TooLarge`` once it is known to be over ``limit`` bytes (``declared``,
    the parsed Content-Length, is checked before reading); None when the client went away
    before sending it all (nobody is left to answer)."""
    if declared is not None and declared > limit:
        return TooLarge(limit, declared)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # http.disconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return TooLarge(limit)
        if not message.get("more_body", False):
            # The usual case, a body in one message, is returned without a copy.
            return b"".join((*chunks, chunk)) if chunks else chunk
        chunks.append(chunk)


@dataclass(frozen=True, slots=True)
class StreamedBody:
    """The first bytes of a body (``kept``) and its whole ``size``."""

    kept: bytes
    size: int

    @property
    def truncated(self) -> bool:
        return self.size > len(self.kept)


async def stream_body(
    receive: Receive, keep: int, on_chunk: Callable[[bytes], None]
) -> StreamedBody | None:
    """Read the whole body, passing each chunk to ``on_chunk`` and keeping its first ``keep``
    bytes; None when the client went away before sending it all."""
    chunks: list[bytes] = []
    kept = size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # http.disconnect
        chunk: bytes = message.get("body", b"")
        if chunk:
            on_chunk(chunk)
            size += len(chunk)
            if kept < keep:
                part = chunk if kept + len(chunk) <= keep else chunk[: keep - kept]
                chunks.append(part)
                kept += len(part)
        if not message.get("more_body", False):
            # The usual case, a body in one message, is returned without a copy.
            return StreamedBody(chunks[0] if len(chunks) == 1 else b"".join(chunks), size)
