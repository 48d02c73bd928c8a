"""The Idempotency-Key at the HTTP edge, for every ingestion route that takes one: the key's
form (1 to 255 visible ASCII characters, as in the IETF draft), the answer to a key reused
for another request, and what makes two requests the same (``idempotency.fingerprint`` of the
method, the path with its query, and the parsed body's canonical JSON)."""

from __future__ import annotations

import re

import orjson
import pydantic
from starlette.responses import Response
from starlette.types import Scope

from cio_relay.server.idempotency import fingerprint
from cio_relay.server.responses import error_response

__all__ = ["key_refused", "key_reused", "request_fingerprint"]

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def key_refused(key: str) -> Response | None:
    """The 422 for an Idempotency-Key that is not 1 to 255 visible ASCII characters."""
    if _IDEMPOTENCY_KEY.match(key):
        return None
    return error_response(
        422,
        "invalid",
        "Idempotency-Key must be 1 to 255 visible ASCII characters",
        field="Idempotency-Key",
    )


def key_reused() -> Response:
    """The 422 for an Idempotency-Key seen before with another request."""
    return error_response(
        422,
        "idempotency_key_reused",
        "this Idempotency-Key was used for a different request",
        field="Idempotency-Key",
    )


def request_fingerprint(scope: Scope, parsed: pydantic.BaseModel | None) -> bytes:
    """What makes two requests under one Idempotency-Key the same (idempotency.fingerprint)."""
    canonical = orjson.dumps(
        parsed.model_dump(mode="json", by_alias=True) if parsed is not None else None,
        option=orjson.OPT_SORT_KEYS,
    )
    target = scope["path"] + "?" + scope["query_string"].decode("latin-1")
    return fingerprint(scope["method"], target, canonical)
