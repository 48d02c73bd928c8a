"""The small HTTP vocabulary the emulator's handlers speak: a parsed request, a reply, a problem.

The emulator is a plain ASGI app (no framework routing) because it is the peer of every
benchmark: per-request work is kept to a header scan, one path split and one JSON parse.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

__all__ = [
    "JSON_HEADERS",
    "OK",
    "Problem",
    "Reply",
    "Request",
    "json_reply",
    "parse_object",
    "query_params",
]

JSON_HEADERS = ((b"content-type", b"application/json"),)


class Request:
    """One request, read whole. ``segments`` are the percent-decoded path segments."""

    __slots__ = ("authorization", "body", "host", "method", "path", "query", "segments")

    def __init__(
        self,
        method: str,
        path: str,
        segments: list[str],
        query: bytes,
        body: bytes,
        host: str,
        authorization: bytes,
    ) -> None:
        self.method = method
        self.path = path
        self.segments = segments
        self.query = query
        self.body = body
        self.host = host
        self.authorization = authorization

    def json(self) -> Any:
        """The body as JSON; an empty body reads as ``{}`` (the SDK sends ``{}`` or nothing)."""
        if not self.body:
            return {}
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise Problem(400, "request body must be valid JSON", "body") from None


class Reply(NamedTuple):
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


OK = Reply(200, b"{}")


class Problem(Exception):
    """An error answer; the app renders it in the shape of the API family it belongs to."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str = "",
        headers: tuple[tuple[bytes, bytes], ...] = (),
        reason: str = "invalid",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers
        self.reason = reason  # v2 errors name one (track-api.json, errors)


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(value))


def parse_object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise Problem(400, "request body must be a JSON object", "body")
    return body


def query_params(request: Request) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(request.query.decode("latin-1")))
