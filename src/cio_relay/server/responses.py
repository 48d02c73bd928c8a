"""JSON answers of the service, serialised with orjson, and the error shapes.

Every error body is ``{"error": code, "message": text, ...}``; validation errors add ``field``
and, for a documented limit, ``limit``, ``size`` and ``unit`` (schemas.ErrorBody).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson
import pydantic
import pydantic_core
from starlette.responses import Response

from cio_relay.asgi_body import TooLarge
from cio_relay.errors import (
    LimitExceeded,
    OutboxFullError,
    StorageUnavailableError,
    ValidationError,
)

__all__ = [
    "accepted",
    "error_response",
    "internal_error",
    "invalid_from_pydantic",
    "invalid_from_validation",
    "json_response",
    "outbox_full",
    "storage_unavailable",
    "too_large",
    "unauthorized",
]

_JSON = "application/json"
_JSON_CONTENT_TYPE = (b"content-type", _JSON.encode())


class _JsonResponse(Response):
    """A JSON body with the headers Starlette would give it, encoded straight into the list.

    ``Response.__init__`` renders the content and rebuilds the header list from a mapping (a
    large share of the ingestion API's 202, docs/benchmarks.md); the bodies here are JSON bytes
    already and never empty, so the headers are the given ones, then content-length and
    content-type.
    """

    media_type = _JSON

    def __init__(self, body: bytes, status: int, headers: Mapping[str, str] | None) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        self.raw_headers = [(b"content-length", b"%d" % len(body)), _JSON_CONTENT_TYPE]
        if headers:  # rare (401, 503, replays): no generator on the way of the common 202
            self.raw_headers[:0] = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ]


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return _JsonResponse(orjson.dumps(data), status, headers)


def accepted(op_ids: list[str], *, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return json_response({"op_ids": op_ids}, 202, headers)


def error_response(
    status: int,
    error: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **fields: Any,
) -> Response:
    body = {"error": error, "message": message}
    body.update({k: v for k, v in fields.items() if v is not None})
    return json_response(body, status, headers)


def internal_error() -> Response:
    """500 for an unexpected error; what went wrong is for the logs, not for the client."""
    return error_response(500, "internal", "internal server error")


_UNAUTHORIZED = orjson.dumps({"error": "unauthorized", "message": "unauthorized"})
_BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def unauthorized() -> Response:
    """401 with nothing that tells a caller why (missing, malformed and wrong keys look alike)."""
    return _JsonResponse(_UNAUTHORIZED, 401, _BEARER_CHALLENGE)


def invalid_from_validation(exc: ValidationError, prefix: str = "") -> Response:
    field = f"{prefix}{exc.field}" if exc.field else prefix.rstrip(".") or None
    if isinstance(exc, LimitExceeded):
        return error_response(
            422,
            "limit_exceeded",
            str(exc),
            field=field,
            limit=exc.limit,
            size=exc.size,
            unit=exc.unit,
        )
    return error_response(422, "invalid", str(exc), field=field)


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def invalid_from_pydantic(exc: pydantic.ValidationError, body: bytes | None = None) -> Response:
    """The first problem, named by its JSON path (``operations[3].data``) in ``body``, the
    request's JSON, when given."""
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    if body is not None:
        loc = _in_document(loc, body, missing=first["type"] == "missing")
    field = _location(loc) or "body"
    return error_response(422, "invalid", f"{field}: {first['msg']}", field=field)


def _in_document(
    loc: tuple[int | str, ...], body: bytes, *, missing: bool
) -> tuple[int | str, ...]:
    """``loc`` without the parts that name no place in the request: a discriminated union's
    tag (``operations.0.track.name``) and a union member's type (``person.str``). A part is
    kept when the document has it there, or when it is the last and names a ``missing``
    field."""
    try:
        node: Any = pydantic_core.from_json(body)  # the parser validate_json used: NaN and all
    except ValueError:
        return loc
    kept: list[int | str] = []
    for index, part in enumerate(loc):
        if _holds(node, part):
            node = node[part]
        elif not (missing and isinstance(node, dict) and index == len(loc) - 1):
            continue
        kept.append(part)
    return tuple(kept)


def _holds(node: Any, part: int | str) -> bool:
    if isinstance(node, list):
        return isinstance(part, int) and 0 <= part < len(node)
    return isinstance(node, dict) and part in node


def too_large(refusal: TooLarge) -> Response:
    """413 with the body every 413 of the service has (``cio_relay.asgi_body``)."""
    return _JsonResponse(refusal.json(), 413, None)


def outbox_full(exc: OutboxFullError) -> Response:
    return _come_back_later("outbox_full", str(exc), exc.retry_after)


def storage_unavailable(exc: StorageUnavailableError) -> Response:
    """503 when the outbox (or the idempotency store) failed the write: nothing was stored, so
    the client may send the same request again after ``Retry-After``."""
    return _come_back_later("storage_unavailable", str(exc), exc.retry_after)


def _come_back_later(error: str, message: str, retry_after: float) -> Response:
    """503 with ``Retry-After`` in whole seconds (at least 1), in the header and the body."""
    seconds = max(1, math.ceil(retry_after))
    return error_response(
        503,
        error,
        message,
        headers={"Retry-After": str(seconds)},
        retry_after=float(seconds),
    )
